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

from tuner.spec import SpecError

# Not imported from tuner.cli, which imports this module: importing this one first would be circular.
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec key at every run (repeatable).")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="The store that holds the schedules and the runs' "
                                                             "results: a SQLAlchemy URL or a SQLite file; default "
                                                             "<storage>/tuner.db.")]
StorageOpt = Annotated[Path, typer.Option("--storage", help="The directory where the default store lies.")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="The head's dashboard address, http://HEAD:8265 "
                                                                  "(default: RAY_ADDRESS).")]
schedule_app = typer.Typer(no_args_is_help=True, help="Sweeps submitted to a Ray cluster on a cron schedule (UTC); "
                                                      "`tuner scheduler` submits them when due.")


def _exit(message: str, code: int) -> typer.Exit:
    from tuner.cli import err

    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return typer.Exit(code)


def _open(url: str | None, storage: Path, *, create: bool) -> Any:
    """The store's engine with the schedule tables up to date; exit 2 if it cannot be opened (or, without
    ``create``, does not exist)."""
    from tuner.cli import _store
    from tuner.store import StoreError, open_store, upgrade_schedules

    if not create:
        engine = _store(url, storage)
    else:
        try:
            engine = open_store(url, storage)
        except StoreError as e:
            raise _exit(f"--store: {e}", 2) from None
    upgrade_schedules(engine)
    return engine


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
                 storage: StorageOpt = Path("./sweeps"), store: StoreOpt = None) -> None:
    """Submit a sweep on a cron schedule; each run is named <spec name>-<YYYYmmdd-HHMM>."""
    from tuner import schedule
    from tuner.cli import _fail_spec, err, out
    from tuner.store import ScheduleExists

    try:
        fields = schedule.check(spec, cron, address=address, overrides=set_ or [], name=name)
    except SpecError as e:
        _fail_spec(e)
        return
    except schedule.ScheduleError as e:
        raise _exit(str(e), 2) from None
    engine = _open(store, storage, create=True)
    try:
        s = schedule.save(engine, fields, warm_start)
    except ScheduleExists as e:
        raise _exit(str(e), 2) from None
    finally:
        engine.dispose()
    due = schedule.next_due(s["cron"], s["created_at"], s["created_at"])
    warm = f"each run starts from the previous run's best {warm_start} config(s)" if warm_start else "runs start cold"
    out.print(f"added schedule {s['name']}: {s['spec_path']} at {s['cron']!r} (UTC) on {s['address']}; first run "
              f"{schedule.fmt(due)}; {warm}", highlight=False)
    err.print("runs are submitted by `tuner scheduler` (keep one running, or call `tuner scheduler --once` from cron) "
              "with the same --storage/--store", highlight=False)


@schedule_app.command("list")
def schedule_list(storage: StorageOpt = Path("./sweeps"), store: StoreOpt = None) -> None:
    """The schedules, with their next due time and their last run."""
    from tuner.cli import out
    from tuner.schedule import fmt, next_due, utcnow
    from tuner.store import list_schedules, safe_url

    engine = _open(store, storage, create=False)
    try:
        rows = list_schedules(engine)
    finally:
        engine.dispose()
    if not rows:
        out.print(f"no schedules in {safe_url(engine.url)}", highlight=False)
        return
    now = utcnow()
    cells = []
    for s in rows:
        run = s["last_run"]
        last = f"{run['sweep_name'] or '-'} ({run['status']})" if run else "-"
        cells.append((s["name"], s["cron"], s["address"] or "", fmt(next_due(s["cron"], s["created_at"], now)),
                      fmt(s["last_fired"]), last))
    table = Table(title=f"schedules in {safe_url(engine.url)}")
    for i, col in enumerate(("name", "cron", "address", "next due", "last fired", "last run")):
        table.add_column(col, no_wrap=True, min_width=max(len(col), *(len(c[i]) for c in cells)))
    for row in cells:
        table.add_row(*row)
    out.print(table)


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="The schedule's name (tuner schedule list).")],
                    storage: StorageOpt = Path("./sweeps"), store: StoreOpt = None) -> None:
    """Stop scheduling a sweep (its past runs' sweeps stay in the store)."""
    from tuner.cli import out
    from tuner.store import UnknownSchedule, remove_schedule

    engine = _open(store, storage, create=False)
    try:
        remove_schedule(engine, name)
    except UnknownSchedule as e:
        raise _exit(f"{e} (tuner schedule list shows them)", 2) from None
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
    log = logging.getLogger("tuner.schedule")
    for old in [h for h in log.handlers if h.get_name() == handler.get_name()]:
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def scheduler(storage: StorageOpt = Path("./sweeps"), store: StoreOpt = None,
              poll: Annotated[float, typer.Option(min=1.0, help="Seconds between checks.")] = 30.0,
              once: Annotated[bool, typer.Option("--once", help="Check once and exit (to run from cron); exit 1 if "
                                                                "a due run could not be submitted.")] = False,
              ) -> None:
    """Submit the scheduled sweeps when due, each run exactly once (the store remembers across restarts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner.cli import err
    from tuner.schedule import Scheduler
    from tuner.store import list_schedules, safe_url

    engine = _open(store, storage, create=False)
    _log_to_stderr()
    sched = Scheduler(engine)
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
        raise _exit(f"the sweep store failed: {type(e).__name__}: {e}", 1) from None
    finally:
        engine.dispose()
