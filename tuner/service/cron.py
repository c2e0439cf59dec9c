"""Scheduled sweeps: a spec submitted to a Ray cluster on a cron schedule, each run warm-started from the best
configs of the schedule's previous run that left results in the store.

The store is the scheduler's memory, so a restarted scheduler (or a second one) neither misses nor repeats a run:

- a fire time is claimed by inserting its ``ScheduleRun`` row, unique per (schedule, due time): one claim wins;
- the run's job id is derived from (schedule, due time). A run still ``claimed`` at the next tick (the scheduler died
  before recording the submission, or the cluster could not be reached) is submitted again under the same id; if
  the first submission did reach the cluster, Ray refuses the second and the run is marked submitted;
- a scheduler that was down across several fire times runs only the latest (they coalesce, as APScheduler's do by
  default) and logs how many it skipped; a claimed run that a newer fire time overtakes is dropped, not submitted.

Cron expressions have five fields (minute resolution) and are read in UTC; a schedule never fires at a time before
it was added.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from croniter import croniter
from sqlalchemy import Engine

from tuner import store
from tuner.service import jobs
from tuner.spec import Spec, SpecError, load

log = logging.getLogger(__name__)

DEFAULT_WARM_START = 3
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a schedule's name goes into job ids, like a sweep's
MAX_COUNTED = 10_000  # skipped fire times are counted one by one: a per-minute cron down for weeks stops here
CRON_HELP = 'five fields, minute hour day-of-month month day-of-week, in UTC, e.g. "0 2 * * *"'


class ScheduleError(ValueError):
    """A schedule that cannot be added as given: a bad cron, name or address (one line, exit 2)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def fmt(t: datetime | None) -> str:
    return f"{_utc(t):%Y-%m-%d %H:%M} UTC" if t else "-"


# ---- cron -----------------------------------------------------------------------------------------------------


def check_cron(expr: str) -> str:
    """The expression, whitespace normalised; ScheduleError unless it is a valid five-field cron (or @daily...)."""
    expr = " ".join(expr.split())
    if not expr.startswith("@") and len(expr.split()) != 5:
        raise ScheduleError(f"--cron {expr!r}: expected {CRON_HELP}")
    try:
        croniter(expr)
    except (ValueError, KeyError) as e:  # croniter's errors are ValueErrors
        raise ScheduleError(f"--cron {expr!r}: {e} (expected {CRON_HELP})") from None
    return expr


def latest_due(cron: str, created_at: datetime, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now``, if it is after ``created_at``; else None."""
    now = _utc(now)
    # get_prev is strict: start just past now's minute so that a fire time equal to now counts.
    start = now.replace(second=0, microsecond=0) + timedelta(seconds=1)
    t = _utc(croniter(cron, start).get_prev(datetime))
    return t if t > _utc(created_at) else None


def next_due(cron: str, created_at: datetime, now: datetime) -> datetime:
    """The first fire time after ``now`` (and after ``created_at``)."""
    return _utc(croniter(cron, max(_utc(now), _utc(created_at))).get_next(datetime))


def fire_times_between(cron: str, after: datetime, before: datetime) -> int:
    """How many fire times lie strictly between ``after`` and ``before`` (at most MAX_COUNTED)."""
    it, n = croniter(cron, _utc(after)), 0
    while n < MAX_COUNTED and _utc(it.get_next(datetime)) < _utc(before):
        n += 1
    return n


def submission_id(schedule: str, due: datetime) -> str:
    return f"tuner-sched-{schedule}-{_utc(due):%Y%m%dT%H%M}"


def sweep_name(spec_name: str, due: datetime) -> str:
    return f"{spec_name}-{_utc(due):%Y%m%d-%H%M}"


# ---- adding ---------------------------------------------------------------------------------------------------


def check_address(address: str | None) -> str:
    addr = address or os.environ.get("RAY_ADDRESS")
    if not addr:
        raise ScheduleError("--address: a schedule needs the cluster to submit to, its dashboard address "
                            "http://HEAD:8265 (or set RAY_ADDRESS)")
    if not addr.startswith(("http://", "https://")):
        raise ScheduleError(f"--address {addr}: give the head's dashboard address, e.g. http://HEAD:8265")
    return addr


def check(spec_path: str | Path, cron: str, *, address: str | None, overrides: list[str], name: str | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    """A new schedule's fields (name, spec_path made absolute, cron, address, overrides, created_at), validated:
    SpecError for a bad spec, ScheduleError for a bad cron, name or address. Stores nothing."""
    cron = check_cron(cron)
    addr = check_address(address)
    path = Path(spec_path).expanduser().resolve()
    spec = load(path, overrides)
    name = name or spec.name
    if not NAME.match(name) or len(name) > 128:
        raise ScheduleError(f"--name {name!r}: letters, digits, '.', '_' and '-', starting with a letter or digit")
    created = _utc(now or utcnow())
    # Each run is the spec under a dated name: check that name passes the spec's rules now, not at 2 a.m.
    load(path, [*overrides, f"name={sweep_name(spec.name, next_due(cron, created, created))}"])
    return {"name": name, "spec_path": str(path), "cron": cron, "address": addr, "overrides": list(overrides),
            "created_at": created}


def save(engine: Engine, fields: dict[str, Any], warm_start: int = DEFAULT_WARM_START) -> dict[str, Any]:
    """Store a checked schedule (as in store.list_schedules); store.ScheduleExists if its name is taken."""
    return store.add_schedule(engine, fields["name"], spec_path=fields["spec_path"], cron=fields["cron"],
                              address=fields["address"], overrides=fields["overrides"], warm_start=warm_start,
                              created_at=fields["created_at"])


def add(engine: Engine, spec_path: str | Path, cron: str, *, address: str | None, overrides: list[str],
        name: str | None = None, warm_start: int = DEFAULT_WARM_START, now: datetime | None = None) -> dict[str, Any]:
    """check, then save."""
    return save(engine, check(spec_path, cron, address=address, overrides=overrides, name=name, now=now), warm_start)


# ---- warm start -----------------------------------------------------------------------------------------------


def best_configs(engine: Engine, runs: list[dict[str, Any]], keys: list[str],
                 k: int) -> tuple[str, list[dict[str, Any]]] | None:
    """The newest of ``runs`` (newest first) whose sweep has scored trials in the store: its name and its best ``k``
    distinct configs, restricted to ``keys``. None if no run has any."""
    for run in runs:
        if run["status"] != "submitted" or not run["sweep_name"]:
            continue
        try:
            board = store.sweep_leaderboard(engine, run["sweep_name"])
        except store.UnknownSweep:
            log.debug("sweep %s (due %s) is not in the store", run["sweep_name"], fmt(run["due_at"]))
            continue
        points: list[dict[str, Any]] = []
        for trial in board["leaderboard"]:  # ranked best first, unscored trials last
            if trial["value"] is None or len(points) == k:
                break
            point = {key: trial["config"][key] for key in keys if key in trial["config"]}
            if point not in points:
                points.append(point)
        if points:
            return run["sweep_name"], points
    return None


def points_override(points: list[dict[str, Any]]) -> str:
    return "search.points_to_evaluate=" + json.dumps(points)  # JSON is YAML, as --set values are


# ---- the scheduler --------------------------------------------------------------------------------------------


class Submit(Protocol):
    def __call__(self, spec_path: str | Path, overrides: list[str], address: str | None, *,
                 submission_id: str | None = None, store: str | None = None) -> str: ...


@dataclass(frozen=True)
class Fired:
    """One submission attempt of a tick. status: submitted; claimed (the cluster refused or could not be reached:
    retried at the next tick); failed (for good, e.g. the spec became invalid)."""

    schedule: str
    due_at: datetime
    status: str
    submission_id: str
    sweep: str | None = None
    job_id: str | None = None
    warm: int = 0
    error: str | None = None


class CronScheduler:
    """Fires the store's schedules: ``tick()`` submits each run that is due and not yet submitted, once."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow, submit: Submit | None = None,
                 store_url: str | None = None):
        self.engine = engine
        self.clock = clock
        self.submit: Submit = submit or jobs.submit
        # The runs' drivers record into this store: the next run of a schedule finds its predecessor's results here.
        self.store_url = store_url or engine.url.render_as_string(hide_password=False)

    def tick(self) -> list[Fired]:
        """One pass: claim what is due, submit what is claimed; every submission attempt made."""
        now = _utc(self.clock())
        fired: list[Fired] = []
        for sched in store.list_schedules(self.engine):
            if sched["enabled"]:
                self._claim_due(sched, now)
                fired += self._submit_claimed(sched)
        return fired

    def run_forever(self, poll_s: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        """Tick every ``poll_s`` seconds until interrupted; a failed tick (the store unreachable) is logged and the
        loop goes on."""
        while True:
            try:
                self.tick()
            except Exception as e:
                log.error("tick failed: %s: %s", type(e).__name__, e)
            sleep(poll_s)

    def _claim_due(self, sched: dict[str, Any], now: datetime) -> None:
        due = latest_due(sched["cron"], sched["created_at"], now)
        last = sched["last_run"]["due_at"] if sched["last_run"] else None
        if due is None or (last is not None and due <= last):
            return
        if not store.claim_run(self.engine, sched["id"], due, submission_id(sched["name"], due)):
            return  # another scheduler claimed it first
        skipped = fire_times_between(sched["cron"], last or sched["created_at"], due)
        if skipped:
            more = "+" if skipped >= MAX_COUNTED else ""
            log.warning("%s: %d%s fire time(s) since %s passed with no scheduler running; running only the latest, "
                        "%s", sched["name"], skipped, more, fmt(last or sched["created_at"]), fmt(due))

    def _submit_claimed(self, sched: dict[str, Any]) -> list[Fired]:
        runs = store.schedule_runs(self.engine, sched["id"])  # newest first
        fired = []
        for i, run in enumerate(runs):
            if run["status"] != "claimed":
                continue
            if i == 0:
                fired.append(self._submit_run(sched, run, earlier=runs[1:]))
            else:
                error = f"overtaken by the run due {fmt(runs[0]['due_at'])} before it was recorded as submitted"
                store.update_run(self.engine, run["id"], status="failed", error=error)
                log.warning("%s due %s: %s", sched["name"], fmt(run["due_at"]), error)
        return fired

    def _submit_run(self, sched: dict[str, Any], run: dict[str, Any], earlier: list[dict[str, Any]]) -> Fired:
        name, due, path = sched["name"], run["due_at"], sched["spec_path"]
        try:
            spec = load(path, sched["overrides"])  # the spec as it is now
        except SpecError as e:
            return self._fail(sched, run, None, f"invalid spec: {_one_line(e)}")
        sweep = run["sweep_name"] or sweep_name(spec.name, due)  # a resubmission keeps its first name
        store.update_run(self.engine, run["id"], sweep_name=sweep)
        overrides = [*sched["overrides"], f"name={sweep}"]
        warm = self._warm_points(sched, overrides, spec, earlier)
        if warm:
            overrides.append(points_override(warm + list(spec.search.points_to_evaluate)))
        try:
            job_id = self.submit(path, overrides, sched["address"], submission_id=run["submission_id"],
                                 store=self.store_url)
        except jobs.JobExists:
            job_id = run["submission_id"]
            log.info("%s due %s: job %s was submitted before the scheduler stopped", name, fmt(due), job_id)
        except jobs.RemoteError as e:
            store.update_run(self.engine, run["id"], error=str(e))
            log.error("%s due %s: %s; retrying at the next tick", name, fmt(due), e)
            return Fired(name, due, "claimed", run["submission_id"], sweep, error=str(e))
        except Exception as e:  # the spec changed since, or anything else: record it, the loop goes on
            msg = _one_line(e) if isinstance(e, SpecError) else f"{type(e).__name__}: {e}"
            return self._fail(sched, run, sweep, msg)
        store.update_run(self.engine, run["id"], status="submitted", job_id=job_id, warm_points=len(warm), error=None)
        log.info("%s due %s: submitted job %s, sweep %s, warm-started from %d config(s)", name, fmt(due), job_id,
                 sweep, len(warm))
        return Fired(name, due, "submitted", run["submission_id"], sweep, job_id, len(warm))

    def _warm_points(self, sched: dict[str, Any], overrides: list[str], spec: Spec,
                     earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The best configs of the schedule's previous run, if they make a valid spec of this run; else none."""
        if sched["warm_start"] <= 0 or not spec.search.space or spec.search.algorithm == "grid":
            return []  # grid runs every combination: points do not apply
        found = best_configs(self.engine, earlier, list(spec.search.space), sched["warm_start"])
        if found is None:
            if earlier:
                log.info("%s: no earlier run has results in the store; starting cold", sched["name"])
            return []
        source, points = found
        try:
            load(sched["spec_path"], [*overrides, points_override(points + list(spec.search.points_to_evaluate))])
        except SpecError as e:
            log.warning("%s: the best configs of %s do not fit the spec as it is now (%s); starting cold",
                        sched["name"], source, _one_line(e))
            return []
        return points

    def _fail(self, sched: dict[str, Any], run: dict[str, Any], sweep: str | None, error: str) -> Fired:
        store.update_run(self.engine, run["id"], status="failed", error=error)
        log.error("%s due %s: not submitted: %s", sched["name"], fmt(run["due_at"]), error)
        return Fired(sched["name"], run["due_at"], "failed", run["submission_id"], sweep, error=error)


def _one_line(e: SpecError) -> str:
    return "; ".join(f"{key}: {msg}" for key, msg in e.problems)
