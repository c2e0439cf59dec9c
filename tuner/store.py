"""The sweep store: sweeps, their trials, every result row the trials reported, and schedules, in one SQL database.

By default an embedded SQLite file, ``<storage>/tuner.db``; for a team, any SQLAlchemy URL (``postgresql://...``).
It has one writer, the sweep driver (through ``tuner.recorder.StoreCallback``), which commits each result as it
arrives: a killed driver loses nothing already reported. Trials never open the store (Optuna's shared-database
storage deadlocks under parallel writers); readers (``tuner sweeps``) may look at it while a sweep runs.

Metrics are stored as JSON with non-finite floats (a diverged loss) as null, which every database accepts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

DB_FILE = "tuner.db"
BUSY_TIMEOUT_MS = 30_000  # a reader holding SQLite's lock makes the writer wait, never fail
SWEEP_STATES = ("running", "finished", "interrupted", "failed")
TRIAL_STATES = ("running", "completed", "stopped", "error")  # completed: ran its whole budget; stopped: early
# Database drivers whose pip name differs from the module SQLAlchemy imports.
_DRIVERS = {"psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient", "psycopg": "psycopg[binary]"}


class StoreError(Exception):
    """A store that cannot be opened (bad URL, missing driver) or a sweep it does not hold."""


class NoStore(StoreError):
    """The store's SQLite file does not exist (yet): no sweep ever ran with it."""


class UnknownSweep(StoreError, KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no sweep named {self.name!r} in the store"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    storage: Mapped[str] = mapped_column(Text)  # the sweep's directory, <storage>/<name>
    status: Mapped[str] = mapped_column(String(16))  # SWEEP_STATES
    metric: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    best_trial_id: Mapped[str | None] = mapped_column(String(64))
    best_value: Mapped[float | None] = mapped_column(Float)
    trials: Mapped[list[Trial]] = relationship(back_populates="sweep", cascade="all, delete-orphan",
                                               passive_deletes=True)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("sweep_id", "trial_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the tuned keys only
    status: Mapped[str] = mapped_column(String(16), default="running")  # TRIAL_STATES
    value: Mapped[float | None] = mapped_column(Float)  # the best metric value reported so far
    iterations: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped when the trial's config changes after it reported (a PBT/PB2 exploit): the exploited trial restarts
    # from its donor's iteration count, and its new rows must not replace the ones it reported before.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    sweep: Mapped[Sweep] = relationship(back_populates="trials")


class Result(Base):
    __tablename__ = "results"
    # A driver restarted from Tune's experiment state replays some results: one row per (trial, generation,
    # iteration), and a replayed row replaces its first report.
    __table_args__ = (UniqueConstraint("trial_pk", "generation", "training_iteration"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_pk: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    training_iteration: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Schedule(Base):
    """A sweep submitted to a Ray cluster on a cron schedule (``tuner.schedule``); its runs are ``ScheduleRun``s."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    spec_path: Mapped[str] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(Text)
    overrides: Mapped[list[str]] = mapped_column(JSON, default=list)  # --set a.b=c, in order
    last_fired: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    warm_start: Mapped[int] = mapped_column(Integer, default=3)  # each run starts from the previous run's best K


# ---- opening --------------------------------------------------------------------------------------------------


def store_url(url: str | None, storage_dir: str | Path) -> str:
    """The store's SQLAlchemy URL: ``url`` as given, a plain file path as SQLite, or ``<storage_dir>/tuner.db``."""
    if not url:
        return f"sqlite:///{Path(storage_dir).expanduser().resolve() / DB_FILE}"
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def open_store(url: str | None, storage_dir: str | Path, *, create: bool = True) -> Engine:
    """An engine on the store (tables created if missing). StoreError if the URL or its driver is unusable, or, without
    ``create``, if the store is a SQLite file that does not exist (readers create nothing)."""
    raw = store_url(url, storage_dir)
    try:
        u = make_url(raw)
    except ArgumentError:
        raise StoreError(f"store {raw!r} is not a database URL (e.g. sqlite:///path/tuner.db, "
                         f"postgresql://host/db)") from None
    sqlite = u.get_backend_name() == "sqlite"
    if sqlite and u.database and u.database != ":memory:":
        if not create and not Path(u.database).is_file():
            raise NoStore(f"no sweep store at {u.database}")
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000} if sqlite else {})
    except ModuleNotFoundError as e:
        pkg = _DRIVERS.get(e.name or "", e.name)
        raise StoreError(f"store {safe_url(u)} needs the database driver {e.name}: pip install '{pkg}'") from None
    except NoSuchModuleError:
        raise StoreError(f"store {safe_url(u)}: SQLAlchemy knows no database {u.drivername!r}") from None
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    Base.metadata.create_all(engine)
    return engine


def safe_url(url: Any) -> str:
    """A store URL fit to print: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


# ---- writing (the sweep driver only) --------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars as Python numbers, non-finite floats as None, anything else as str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


def find_sweep(engine: Engine, name: str) -> dict[str, Any] | None:
    """The sweep named ``name`` (as in list_sweeps), or None."""
    with Session(engine) as s:
        sweep = s.scalar(select(Sweep).where(Sweep.name == name))
        return _sweep_dict(s, sweep) if sweep else None


def start_sweep(engine: Engine, name: str, *, spec: dict[str, Any], storage: str, metric: str, mode: str,
                replace: bool = False) -> int:
    """Record a new running sweep; its id. A sweep of the same name is deleted with ``replace``, else StoreError."""
    with Session(engine) as s:
        old = s.scalar(select(Sweep).where(Sweep.name == name))
        if old is not None:
            if not replace:
                raise StoreError(f"the store already holds a sweep named {name!r} (results in {old.storage})")
            s.delete(old)
            s.flush()
        sweep = Sweep(name=name, spec=jsonable(spec), storage=storage, status="running", metric=metric, mode=mode)
        s.add(sweep)
        s.commit()
        return sweep.id


def _get(s: Session, sweep_id: int) -> Sweep:
    sweep = s.get(Sweep, sweep_id)
    if sweep is None:
        raise StoreError(f"the store holds no sweep with id {sweep_id} (was it replaced by another run?)")
    return sweep


def _trial(s: Session, sweep_id: int, trial_id: str) -> Trial:
    trial = s.scalar(select(Trial).where(Trial.sweep_id == sweep_id, Trial.trial_id == trial_id))
    if trial is None:
        trial = Trial(sweep_id=sweep_id, trial_id=trial_id, config={}, status="running", iterations=0, seconds=0.0)
        s.add(trial)
    return trial


def record_trial(engine: Engine, sweep_id: int, trial_id: str, *, config: dict[str, Any] | None = None,
                 status: str | None = None, value: float | None = None, checkpoint: str | None = None,
                 error: str | None = None) -> None:
    """Create or update a trial's row; the fields left None keep their value."""
    if status is not None and status not in TRIAL_STATES:
        raise ValueError(f"trial status {status!r}: expected one of {', '.join(TRIAL_STATES)}")
    with Session(engine) as s:
        trial = _trial(s, sweep_id, trial_id)
        if config is not None:
            config = jsonable(config)
            if trial.iterations and config != trial.config:
                trial.generation = (trial.generation or 0) + 1
            trial.config = config
        for field, v in (("status", status), ("value", value), ("checkpoint", checkpoint), ("error", error)):
            if v is not None:
                setattr(trial, field, v)
        trial.updated_at = _now()
        s.commit()


def _better(mode: str, new: float, old: float | None) -> bool:
    return old is None or (new < old if mode == "min" else new > old)


def record_result(engine: Engine, sweep_id: int, trial_id: str, metrics: dict[str, Any]) -> bool:
    """Store one reported result row (a replayed ``training_iteration`` replaces its row) and update the trial's
    progress, its best value and the sweep's best; committed before returning. True if the trial's value improved.
    """
    metrics = jsonable(metrics)
    iteration = int(metrics["training_iteration"])
    with Session(engine) as s:
        trial = _trial(s, sweep_id, trial_id)
        sweep = _get(s, sweep_id)
        s.flush()  # a new trial needs its primary key
        generation = trial.generation or 0
        row = s.scalar(select(Result).where(Result.trial_pk == trial.id, Result.generation == generation,
                                            Result.training_iteration == iteration))
        if row is None:
            s.add(Result(trial_pk=trial.id, generation=generation, training_iteration=iteration, metrics=metrics))
        else:
            row.metrics, row.created_at = metrics, _now()
        trial.iterations = iteration
        trial.seconds = float(metrics.get("time_total_s") or 0.0)
        if isinstance(metrics.get("tokens"), (int, float)):
            trial.tokens = int(metrics["tokens"])
        reported = metrics.get(sweep.metric)
        improved = False
        if isinstance(reported, (int, float)):  # None when not finite
            value = float(reported)
            improved = _better(sweep.mode, value, trial.value)
            if improved:
                trial.value = value
            if _better(sweep.mode, value, sweep.best_value):
                sweep.best_value, sweep.best_trial_id = value, trial_id
        trial.updated_at = _now()
        s.commit()
        return improved


def finish_sweep(engine: Engine, sweep_id: int, status: str, *, best: dict[str, Any] | None = None,
                 trials: Iterable[dict[str, Any]] = ()) -> None:
    """Mark the sweep ended (``status`` finished, interrupted or failed) with its best trial, and bring each trial's
    row in line with the final summary (summary.json's trials: state, value, checkpoint, error)."""
    if status not in SWEEP_STATES[1:]:
        raise ValueError(f"sweep status {status!r}: expected one of {', '.join(SWEEP_STATES[1:])}")
    with Session(engine) as s:
        sweep = _get(s, sweep_id)
        for t in trials:
            trial = _trial(s, sweep_id, str(t["trial_id"]))
            trial.status = t.get("state") or trial.status
            trial.config = jsonable(t.get("config") or trial.config)
            for field in ("value", "checkpoint", "error"):
                if t.get(field) is not None:
                    setattr(trial, field, jsonable(t[field]))
            trial.updated_at = _now()
        sweep.status, sweep.finished_at = status, _now()
        if best:
            sweep.best_trial_id, sweep.best_value = str(best["trial_id"]), best.get("value")
        s.commit()


def reopen_sweep(engine: Engine, name: str) -> int:
    """Mark a sweep running again (tuner resume); its id. Its trials and results stay."""
    with Session(engine) as s:
        sweep = s.scalar(select(Sweep).where(Sweep.name == name))
        if sweep is None:
            raise UnknownSweep(f"no sweep named {name!r} in the store")
        sweep.status, sweep.finished_at = "running", None
        s.commit()
        return sweep.id


# ---- reading --------------------------------------------------------------------------------------------------


def _compute(s: Session, sweep_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per sweep: its number of trials and the compute they spent (trial-seconds, iterations, tokens)."""
    q = (select(Trial.sweep_id, func.count(Trial.id), func.sum(Trial.seconds), func.sum(Trial.iterations),
                func.sum(Trial.tokens))
         .where(Trial.sweep_id.in_(sweep_ids)).group_by(Trial.sweep_id))
    out = {i: {"trials": 0, "trial_seconds": 0.0, "iterations": 0, "tokens": None} for i in sweep_ids}
    for sweep_id, n, secs, iters, tokens in s.execute(q):
        out[sweep_id] = {"trials": int(n), "trial_seconds": round(float(secs or 0.0), 3), "iterations": int(iters or 0),
                         "tokens": int(tokens) if tokens is not None else None}
    return out


def _utc(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored one is UTC.
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _sweep_dict(s: Session, sweep: Sweep, compute: dict[str, Any] | None = None) -> dict[str, Any]:
    c = dict(compute or _compute(s, [sweep.id])[sweep.id])
    return {"name": sweep.name, "status": sweep.status, "metric": sweep.metric, "mode": sweep.mode,
            "storage": sweep.storage, "trials": c.pop("trials"), "best_trial_id": sweep.best_trial_id,
            "best_value": sweep.best_value, "compute": c, "created_at": _utc(sweep.created_at),
            "finished_at": _utc(sweep.finished_at)}


def list_sweeps(engine: Engine) -> list[dict[str, Any]]:
    """Every sweep, newest first: name, status, metric, mode, storage, trials, best_trial_id, best_value,
    compute {trial_seconds, iterations, tokens}, created_at, finished_at."""
    with Session(engine) as s:
        sweeps = s.scalars(select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc())).all()
        compute = _compute(s, [w.id for w in sweeps])
        return [_sweep_dict(s, w, compute[w.id]) for w in sweeps]


def sweep_leaderboard(engine: Engine, name: str) -> dict[str, Any]:
    """The sweep (as in list_sweeps) with ``leaderboard``: its trials ranked by value, best first (trials without a
    value last), each {rank, trial_id, state, value, config, iterations, tokens, seconds, checkpoint, error}.
    UnknownSweep if the store holds no sweep of that name."""
    with Session(engine) as s:
        sweep = s.scalar(select(Sweep).where(Sweep.name == name))
        if sweep is None:
            raise UnknownSweep(name)
        out = _sweep_dict(s, sweep)
        sign = 1 if sweep.mode == "min" else -1
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep.id).order_by(Trial.id)).all()
        ranked = sorted(trials, key=lambda t: (t.value is None, sign * (t.value or 0.0)))
        out["leaderboard"] = [
            {"rank": rank, "trial_id": t.trial_id, "state": t.status, "value": t.value, "config": t.config,
             "iterations": t.iterations, "tokens": t.tokens, "seconds": t.seconds, "checkpoint": t.checkpoint,
             "error": t.error}
            for rank, t in enumerate(ranked, 1)]
        return out


def trial_results(engine: Engine, name: str, trial_id: str) -> list[dict[str, Any]]:
    """Every result row a trial of the sweep ``name`` reported, in the order reported (a PBT-exploited trial's
    iterations restart from its donor's)."""
    with Session(engine) as s:
        q = (select(Result.metrics).join(Trial, Result.trial_pk == Trial.id).join(Sweep)
             .where(Sweep.name == name, Trial.trial_id == trial_id)
             .order_by(Result.generation, Result.training_iteration))
        return list(s.scalars(q))


# ---- schedules (tuner.schedule) -------------------------------------------------------------------------------

RUN_STATES = ("claimed", "submitted", "failed")


class ScheduleRun(Base):
    """One fire time of a schedule. Inserting the row is the claim: it is unique per (schedule, due_at), so neither
    a second scheduler nor a restarted one claims that time again. claimed -> submitted (job_id) or failed (error)."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Derived from (schedule, due_at): Ray refuses a second job under it, so a resubmitted run never runs twice.
    submission_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="claimed")  # RUN_STATES
    sweep_name: Mapped[str | None] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(String(255))
    warm_points: Mapped[int | None] = mapped_column(Integer)  # how many past configs the run started from
    error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ScheduleExists(StoreError):
    pass


class UnknownSchedule(StoreError, KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no schedule named {self.name!r} in the store"


def upgrade_schedules(engine: Engine) -> None:
    """Add the schedule columns that a store made by an earlier tuner lacks (create_all adds tables, not columns)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    if "warm_start" in {c["name"] for c in inspect(engine).get_columns("schedules")}:
        return
    try:
        with engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE schedules ADD COLUMN warm_start INTEGER DEFAULT 3")
    except DBAPIError:
        if "warm_start" not in {c["name"] for c in inspect(engine).get_columns("schedules")}:
            raise  # not another process adding it at the same moment


def _in_utc(t: datetime) -> datetime:
    # SQLite keeps no offset: every stored time is UTC, so one due time always maps to one row.
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _run_dict(run: ScheduleRun) -> dict[str, Any]:
    return {"id": run.id, "schedule_id": run.schedule_id, "due_at": _utc(run.due_at),
            "submission_id": run.submission_id, "status": run.status, "sweep_name": run.sweep_name,
            "job_id": run.job_id, "warm_points": run.warm_points, "error": run.error,
            "claimed_at": _utc(run.claimed_at), "updated_at": _utc(run.updated_at)}


def _schedule_dict(s: Session, sched: Schedule) -> dict[str, Any]:
    last = s.scalar(select(ScheduleRun).where(ScheduleRun.schedule_id == sched.id)
                    .order_by(ScheduleRun.due_at.desc()).limit(1))
    return {"id": sched.id, "name": sched.name, "spec_path": sched.spec_path, "cron": sched.cron,
            "address": sched.address, "overrides": list(sched.overrides or []), "enabled": sched.enabled,
            "warm_start": 3 if sched.warm_start is None else sched.warm_start, "created_at": _utc(sched.created_at),
            "last_fired": _utc(sched.last_fired), "last_run": _run_dict(last) if last else None}


def add_schedule(engine: Engine, name: str, *, spec_path: str, cron: str, address: str | None,
                 overrides: list[str], warm_start: int, created_at: datetime | None = None) -> dict[str, Any]:
    """Store a new schedule (as in list_schedules); ScheduleExists if one has that name. It fires only at times
    after ``created_at`` (default now)."""
    from sqlalchemy.exc import IntegrityError

    with Session(engine) as s:
        sched = Schedule(name=name, spec_path=spec_path, cron=cron, address=address, overrides=list(overrides),
                         warm_start=warm_start, enabled=True, created_at=_in_utc(created_at or _now()))
        s.add(sched)
        try:
            s.commit()
        except IntegrityError:
            raise ScheduleExists(f"the store already holds a schedule named {name!r} (tuner schedule list)") from None
        return _schedule_dict(s, sched)


def list_schedules(engine: Engine) -> list[dict[str, Any]]:
    """Every schedule by name: id, name, spec_path, cron, address, overrides, enabled, warm_start, created_at,
    last_fired and last_run (its newest run as in schedule_runs, or None)."""
    with Session(engine) as s:
        return [_schedule_dict(s, x) for x in s.scalars(select(Schedule).order_by(Schedule.name))]


def remove_schedule(engine: Engine, name: str) -> None:
    """Delete a schedule and the record of its runs (their sweeps stay); UnknownSchedule if there is none."""
    with Session(engine) as s:
        sched = s.scalar(select(Schedule).where(Schedule.name == name))
        if sched is None:
            raise UnknownSchedule(name)
        s.delete(sched)
        s.commit()


def claim_run(engine: Engine, schedule_id: int, due_at: datetime, submission_id: str) -> bool:
    """Claim a schedule's fire time: True if this call did, False if it was claimed already."""
    from sqlalchemy.exc import IntegrityError

    due_at = _in_utc(due_at)
    with Session(engine) as s:
        sched = s.get(Schedule, schedule_id)
        if sched is None:
            return False  # removed meanwhile
        s.add(ScheduleRun(schedule_id=schedule_id, due_at=due_at, submission_id=submission_id, status="claimed"))
        sched.last_fired = due_at
        try:
            s.commit()
        except IntegrityError:
            return False
        return True


def schedule_runs(engine: Engine, schedule_id: int) -> list[dict[str, Any]]:
    """A schedule's runs, newest due time first: id, schedule_id, due_at, submission_id, status, sweep_name,
    job_id, warm_points, error, claimed_at, updated_at."""
    with Session(engine) as s:
        q = select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id).order_by(ScheduleRun.due_at.desc())
        return [_run_dict(r) for r in s.scalars(q)]


def update_run(engine: Engine, run_id: int, *, status: str | None = None, **fields: Any) -> None:
    """Set a run's status and any of sweep_name, job_id, warm_points, error (a None value clears the field)."""
    if status is not None and status not in RUN_STATES:
        raise ValueError(f"run status {status!r}: expected one of {', '.join(RUN_STATES)}")
    unknown = set(fields) - {"sweep_name", "job_id", "warm_points", "error"}
    if unknown:
        raise TypeError(f"update_run: no field {', '.join(sorted(unknown))}")
    with Session(engine) as s:
        run = s.get(ScheduleRun, run_id)
        if run is None:
            return  # its schedule was removed meanwhile
        if status is not None:
            run.status = status
        for field, v in fields.items():
            setattr(run, field, v)
        run.updated_at = _now()
        s.commit()
