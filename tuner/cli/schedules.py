"""``tuner schedule add|list|remove`` and ``tuner scheduler``: sweeps submitted to a Ray cluster on a cron schedule.

Exit codes as for the rest of the CLI: 2 for a bad spec, cron, name, address or store (nothing is stored), 1 for a
store that fails while in use, and for ``scheduler --once`` when a due run could not be submitted.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tuner.cli.options import (
    DEFAULT_STORAGE,
    USAGE,
    JsonOpt,
    SetOpt,
    StorageOpt,
    StoreOpt,
    err,
    fail,
    fail_spec,
    open_store,
    out,
    print_json,
)
from tuner.cli.options import JobsAddressOpt as AddressOpt
from tuner.spec import SpecError

schedule_app = typer.Typer(no_args_is_help=True, help="Sweeps submitted to a Ray cluster on a cron schedule (UTC); "
                                                      "`tuner scheduler` submits them when due.")


@schedule_app.command("add")
def schedule_add(spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML); its directory is shipped at each "
                                                           "run, as it is then.")],
                 cron: Annotated[str, typer.Option("--cron", help='When to run, in UTC: "minute hour day-of-month '
                                                                  'month day-of-week", e.g. "0 2 * * *".')],
                 address: AddressOpt = None, set_: SetOpt = None,
                 name: Annotated[str | None, typer.Option(help="The schedule's name (default: the spec's name).")]
                 = None,
                 warm_start: Annotated[int, typer.Option("--warm-start", min=0, help="Start each run from the best K "
                                                         "configs of the previous run (0: never).")] = 3,
                 storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None) -> None:
    """Submit a sweep on a cron schedule; each run is named <spec name>-<YYYYmmdd-HHMM>."""
    from tuner.service import cron as scheduling  # SQLAlchemy and croniter: only for these commands
    from tuner.store import ScheduleExists

    try:
        fields = scheduling.check(spec, cron, address=address, overrides=set_ or [], name=name)
    except SpecError as e:
        fail_spec(e)
    except scheduling.ScheduleError as e:
        fail(str(e), USAGE)
    engine = open_store(store, storage, create=True)
    try:
        s = scheduling.save(engine, fields, warm_start)
    except ScheduleExists as e:
        fail(str(e), USAGE)
    finally:
        engine.dispose()
    due = scheduling.next_due(s["cron"], s["created_at"], s["created_at"])
    warm = f"each run starts from the previous run's best {warm_start} config(s)" if warm_start else "runs start cold"
    out.print(f"added schedule {s['name']}: {s['spec_path']} at {s['cron']!r} (UTC) on {s['address']}; first run "
              f"{scheduling.fmt(due)}; {warm}", highlight=False)
    err.print("runs are submitted by `tuner scheduler` (keep one running, or call `tuner scheduler --once` from cron) "
              "with the same --storage/--store", highlight=False)


@schedule_app.command("list")
def schedule_list(storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None, json_: JsonOpt = False) -> None:
    """The schedules, with their next due time and their last run."""
    from tuner.service import cron as scheduling  # SQLAlchemy and croniter: only for these commands
    from tuner.store import list_schedules, safe_url

    engine = open_store(store, storage)
    try:
        rows = list_schedules(engine)
    finally:
        engine.dispose()
    now = scheduling.utcnow()
    if json_:
        print_json([{**s, "next_due": scheduling.next_due(s["cron"], s["created_at"], now)} for s in rows])
        return
    if not rows:
        out.print(f"no schedules in {safe_url(engine.url)}", highlight=False)
        return
    cells = []
    for s in rows:
        run = s["last_run"]
        last = f"{run['sweep_name'] or '-'} ({run['status']})" if run else "-"
        due = scheduling.next_due(s["cron"], s["created_at"], now)
        cells.append((s["name"], s["cron"], s["address"] or "", scheduling.fmt(due), scheduling.fmt(s["last_fired"]),
                      last))
    table = Table(title=f"schedules in {safe_url(engine.url)}")
    for i, col in enumerate(("name", "cron", "address", "next due", "last fired", "last run")):
        table.add_column(col, no_wrap=True, min_width=max(len(col), *(len(c[i]) for c in cells)))
    for row in cells:
        table.add_row(*row)
    out.print(table)


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="The schedule's name (tuner schedule list).")],
                    storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None) -> None:
    """Stop scheduling a sweep (its past runs' sweeps stay in the store)."""
    from tuner.store import UnknownSchedule, remove_schedule

    engine = open_store(store, storage)
    try:
        remove_schedule(engine, name)
    except UnknownSchedule as e:
        fail(f"{e} (tuner schedule list shows them)", USAGE)
    finally:
        engine.dispose()
    out.print(f"removed schedule {name}", highlight=False)


class _Stderr(logging.StreamHandler):
    """Writes to the sys.stderr of the moment (one swapped for a test's, and closed since, is never kept)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _log_to_stderr() -> None:
    handler = _Stderr()
    handler.set_name("tuner-scheduler")
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S UTC")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    log = logging.getLogger("tuner.service.cron")
    for old in [h for h in log.handlers if h.get_name() == handler.get_name()]:
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def scheduler(storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None,
              poll: Annotated[float, typer.Option(min=1.0, help="Seconds between checks.")] = 30.0,
              once: Annotated[bool, typer.Option("--once", help="Check once and exit (to run from cron); exit 1 if "
                                                                "a due run could not be submitted.")] = False,
              ) -> None:
    """Submit the scheduled sweeps when due, each run exactly once (the store remembers across restarts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.service import cron as scheduling  # SQLAlchemy and croniter: only for these commands
    from tuner.store import list_schedules, safe_url

    engine = open_store(store, storage)
    _log_to_stderr()
    sched = scheduling.CronScheduler(engine)
    try:
        if once:
            if any(f.status != "submitted" for f in sched.tick()):
                raise typer.Exit(1)
            return
        err.print(f"scheduler: {len(list_schedules(engine))} schedule(s) in {safe_url(engine.url)}; checking every "
                  f"{poll:g} s (Ctrl+C stops)", highlight=False)
        sched.run_forever(poll)
    except KeyboardInterrupt:
        err.print("scheduler stopped")
    except SQLAlchemyError as e:
        fail(f"the sweep store failed: {type(e).__name__}: {e}")
    finally:
        engine.dispose()
