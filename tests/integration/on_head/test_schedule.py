"""The scheduler against a real local head (`ray start --head`, token auth on), with an injected clock: a due
schedule fires exactly once across a restart, a submission the head already holds is not run again, and the next
fire time's run starts from the previous run's best config, read from the store the first run's driver wrote."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tuner import store
from tuner.service import cron
from tuner.service import jobs as ray_jobs
from tuner.service.cron import CronScheduler

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2030, 1, day, hour, minute, second, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def spec_file(shipped_job) -> Path:
    return shipped_job("nightly")


def scheduled_jobs(address: str) -> list[dict]:
    return [j for j in ray_jobs.list_jobs(address) if j["job"].startswith("tuner-sched-nightly-")]


def test_a_due_schedule_fires_exactly_once_across_a_restart(ray_head, spec_file, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    db = str(tmp_path / "tuner.db")
    engine = store.open_store(db, tmp_path)
    cron.add(engine, spec_file, "0 2 * * *", address=ray_head.dashboard, overrides=[], warm_start=1,
                 now=utc(1, 0))
    clock = Clock(utc(1, 2, 0, 30))
    started = time.monotonic()

    [first] = CronScheduler(engine, clock=clock).tick()
    assert (first.status, first.sweep) == ("submitted", "nightly-20300101-0200") and first.job_id
    assert ray_jobs.wait(first.job_id, ray_head.dashboard) == "SUCCEEDED"
    print(f"first run: {time.monotonic() - started:.1f} s")

    restarted = CronScheduler(store.open_store(db, tmp_path), clock=clock)
    assert restarted.tick() == []
    # The scheduler died after Ray took the job but before recording it: resubmitted under the same id, refused.
    run_id = store.schedule_runs(engine, store.list_schedules(engine)[0]["id"])[0]["id"]
    store.update_run(engine, run_id, status="claimed", job_id=None)
    [again] = CronScheduler(store.open_store(db, tmp_path), clock=clock).tick()
    assert (again.status, again.job_id) == ("submitted", first.job_id)
    assert [j["job"] for j in scheduled_jobs(ray_head.dashboard)] == [first.job_id]

    board = store.sweep_leaderboard(engine, first.sweep)["leaderboard"]  # written by the job's driver
    assert len(board) == 2 and board[0]["value"] is not None
    best = board[0]["config"]

    clock.now = utc(2, 2, 0, 10)
    [second] = restarted.tick()
    assert (second.status, second.sweep, second.warm) == ("submitted", "nightly-20300102-0200", 1) and second.job_id
    assert restarted.tick() == []
    jobs = {j["job"]: j for j in scheduled_jobs(ray_head.dashboard)}
    assert list(jobs) == [first.job_id, second.job_id]
    assert "search.points_to_evaluate=" in jobs[second.job_id]["entrypoint"]
    # The previous run's best config is the second run's first trial; once it has started, the run may stop.
    first_trial = None
    deadline = time.monotonic() + 120
    while first_trial is None and time.monotonic() < deadline:
        try:
            trials = store.sweep_leaderboard(engine, second.sweep)["leaderboard"]
        except store.UnknownSweep:
            trials = []
        first_trial = min(trials, key=lambda t: t["trial_id"]) if trials else None
        time.sleep(1)
    ray_jobs.stop(second.job_id, ray_head.dashboard)
    assert first_trial is not None and first_trial["config"] == best
    print(f"both runs: {time.monotonic() - started:.1f} s")
