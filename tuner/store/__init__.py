"""The sweep store: sweeps, their trials, every result row the trials reported, and cron schedules with their
runs, in one SQL database (``engine``: opening it; ``sweeps``; ``schedules``)."""

from tuner.store.engine import (
    BUSY_TIMEOUT_MS,
    DB_FILE,
    NoStore,
    StoreError,
    jsonable,
    migrate,
    open_store,
    safe_url,
    store_url,
)
from tuner.store.schedules import (
    RUN_STATES,
    Schedule,
    ScheduleExists,
    ScheduleRun,
    UnknownSchedule,
    add_schedule,
    claim_run,
    list_schedules,
    remove_schedule,
    schedule_runs,
    update_run,
)
from tuner.store.sweeps import (
    SWEEP_STATES,
    TRIAL_STATES,
    Exploit,
    Result,
    Sweep,
    Trial,
    UnknownSweep,
    drop_errored_trials,
    find_sweep,
    finish_sweep,
    list_sweeps,
    record_exploit,
    record_result,
    record_trial,
    reopen_sweep,
    start_sweep,
    sweep_detail,
    sweep_leaderboard,
    trial_results,
)

__all__ = [
    "BUSY_TIMEOUT_MS", "DB_FILE", "Exploit", "RUN_STATES", "SWEEP_STATES", "TRIAL_STATES", "NoStore", "Result",
    "Schedule", "ScheduleExists", "ScheduleRun", "StoreError", "Sweep", "Trial", "UnknownSchedule", "UnknownSweep",
    "add_schedule", "claim_run", "drop_errored_trials", "find_sweep", "finish_sweep", "jsonable", "list_schedules",
    "list_sweeps", "migrate", "open_store", "record_exploit", "record_result", "record_trial", "remove_schedule",
    "reopen_sweep", "safe_url", "schedule_runs", "start_sweep", "store_url", "sweep_detail", "sweep_leaderboard",
    "trial_results", "update_run",
]
