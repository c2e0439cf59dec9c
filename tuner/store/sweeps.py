"""Sweeps, their trials and every result row the trials reported: written by the sweep driver (through
``tuner.sweep.callbacks.store``), read by ``tuner sweeps`` and the dashboard, also while a sweep runs."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from tuner._util.objective import Objective
from tuner.store.engine import Base, StoreError, as_utc, jsonable, now

SWEEP_STATES = ("running", "finished", "interrupted", "failed")
TRIAL_STATES = ("running", "completed", "stopped", "error")  # completed: ran its whole fidelity; stopped: early


class UnknownSweep(StoreError, KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no sweep named {self.name!r} in the store"


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    storage: Mapped[str] = mapped_column(Text)  # the sweep's directory, <storage>/<name>
    status: Mapped[str] = mapped_column(String(16))  # SWEEP_STATES
    metric: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
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
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Exploit(Base):
    """A PBT/PB2 exploit: the trial took its donor's checkpoint and new hyperparameter values (its generation then
    begins)."""

    __tablename__ = "exploits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_pk: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    donor: Mapped[str] = mapped_column(String(64))  # the donor's trial_id
    at: Mapped[dict[str, Any]] = mapped_column(JSON)  # the donor's training_iteration and time_attr value
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the mutated hyperparameters' new values
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


# ---- writing (the sweep driver only) ---------------------------------------------------------------------

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
    """Create or update a trial's row; the fields left None keep their value. A trial marked ``completed`` ran its
    whole fidelity: its value competes for the sweep's best (one that ended on its own before the scheduler's
    ``max_t`` reported no result ``record_result`` could know was full-length)."""
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
        if status == "completed" and trial.value is not None:
            sweep = _get(s, sweep_id)
            if Objective(sweep.metric, sweep.mode).better(trial.value, sweep.best_value):
                sweep.best_value, sweep.best_trial_id = trial.value, trial_id
        trial.updated_at = now()
        s.commit()


def record_exploit(engine: Engine, sweep_id: int, trial_id: str, *, donor: str, at: dict[str, Any],
                   config: dict[str, Any]) -> None:
    """A PBT/PB2 exploit of ``trial_id``: from ``donor`` at ``at``, with ``config`` (the mutated values)."""
    with Session(engine) as s:
        trial = _trial(s, sweep_id, trial_id)
        s.flush()
        s.add(Exploit(trial_pk=trial.id, donor=donor, at=jsonable(at), config=jsonable(config)))
        s.commit()


def record_result(engine: Engine, sweep_id: int, trial_id: str, metrics: dict[str, Any], *, full: bool = True) -> bool:
    """Store one reported result row (a replayed ``training_iteration`` replaces its row) and update the trial's
    progress, its best value and, for a result at full fidelity (``full``), the sweep's best; committed before
    returning. True if the trial's value improved."""
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
            row.metrics, row.created_at = metrics, now()
        trial.iterations = iteration
        trial.seconds = float(metrics.get("time_total_s") or 0.0)
        if isinstance(metrics.get("tokens"), (int, float)):
            trial.tokens = int(metrics["tokens"])
        reported = metrics.get(sweep.metric)
        improved = False
        objective = Objective(sweep.metric, sweep.mode)
        if isinstance(reported, (int, float)):  # None when not finite
            value = float(reported)
            improved = objective.better(value, trial.value)
            if improved:
                trial.value = value
            if full and objective.better(value, sweep.best_value):
                sweep.best_value, sweep.best_trial_id = value, trial_id
        trial.updated_at = now()
        s.commit()
        return improved


def finish_sweep(engine: Engine, sweep_id: int, status: str, *, best: dict[str, Any] | None = None,
                 trials: Iterable[dict[str, Any]] = ()) -> None:
    """Mark the sweep ended (``status`` finished, interrupted or failed) with its best trial, and bring each trial's
    row in line with the final summary (summary.json's trials: state, value, checkpoint, error). A trial the summary
    does not name that is still marked running ends stopped: one that started after Tune's last saved state when the
    driver died was replaced on resume, and its reported rows stay."""
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
            trial.updated_at = now()
        for trial in s.scalars(select(Trial).where(Trial.sweep_id == sweep_id, Trial.status == "running")):
            trial.status, trial.updated_at = "stopped", now()
        sweep.status, sweep.finished_at = status, now()
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


def drop_errored_trials(engine: Engine, name: str) -> int:
    """Delete the sweep's errored trials with their results (Tune restarts them from scratch under new ids); how
    many."""
    with Session(engine) as s:
        sweep = s.scalar(select(Sweep).where(Sweep.name == name))
        if sweep is None:
            raise UnknownSweep(name)
        errored = s.scalars(select(Trial).where(Trial.sweep_id == sweep.id, Trial.status == "error")).all()
        for trial in errored:
            s.delete(trial)
        s.commit()
        return len(errored)


# ---- reading --------------------------------------------------------------------------------------------------


def _compute(s: Session, sweep_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Per sweep: its number of trials and the compute they spent (trial-seconds, iterations, tokens)."""
    running = func.sum(case((Trial.status == "running", 1), else_=0))
    q = (select(Trial.sweep_id, func.count(Trial.id), running, func.sum(Trial.seconds), func.sum(Trial.iterations),
                func.sum(Trial.tokens))
         .where(Trial.sweep_id.in_(sweep_ids)).group_by(Trial.sweep_id))
    out = {i: {"trials": 0, "running": 0, "trial_seconds": 0.0, "iterations": 0, "tokens": None} for i in sweep_ids}
    for sweep_id, n, live, secs, iters, tokens in s.execute(q):
        out[sweep_id] = {"trials": int(n), "running": int(live or 0), "trial_seconds": round(float(secs or 0.0), 3),
                         "iterations": int(iters or 0), "tokens": int(tokens) if tokens is not None else None}
    return out


def _sweep_dict(s: Session, sweep: Sweep, compute: dict[str, Any] | None = None) -> dict[str, Any]:
    c = dict(compute or _compute(s, [sweep.id])[sweep.id])
    return {"name": sweep.name, "status": sweep.status, "metric": sweep.metric, "mode": sweep.mode,
            "storage": sweep.storage, "trials": c.pop("trials"), "running": c.pop("running"),
            "best_trial_id": sweep.best_trial_id,
            "best_value": sweep.best_value, "compute": c, "created_at": as_utc(sweep.created_at),
            "finished_at": as_utc(sweep.finished_at)}


def list_sweeps(engine: Engine) -> list[dict[str, Any]]:
    """Every sweep, newest first: name, status, metric, mode, storage, trials, running, best_trial_id, best_value,
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
        trials = s.scalars(select(Trial).where(Trial.sweep_id == sweep.id).order_by(Trial.id)).all()
        ranked = Objective(sweep.metric, sweep.mode).ranked(trials, lambda t: t.value,
                                                            full=lambda t: t.status == "completed")
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




def sweep_detail(engine: Engine, name: str) -> dict[str, Any]:
    """The sweep (as in sweep_leaderboard) with its ``spec`` and every trial's ``results``: the rows it reported,
    in the order reported, each with its ``generation`` (bumped by a PBT exploit) and ``created_at``; and its
    ``exploits`` (PBT/PB2: donor, at, config).
    UnknownSweep if the store holds no sweep of that name."""
    out = sweep_leaderboard(engine, name)
    with Session(engine) as s:
        sweep = s.scalar(select(Sweep).where(Sweep.name == name))
        if sweep is None:
            raise UnknownSweep(name)
        out["spec"] = sweep.spec
        q = (select(Trial.trial_id, Trial.started_at, Trial.updated_at, Result.generation, Result.metrics,
                    Result.created_at)
             .join(Result, Result.trial_pk == Trial.id, isouter=True).where(Trial.sweep_id == sweep.id)
             .order_by(Trial.id, Result.generation, Result.training_iteration))
        rows: dict[str, list[dict[str, Any]]] = {}
        times: dict[str, tuple[Any, Any]] = {}
        for trial_id, started, updated, generation, metrics, at in s.execute(q):
            times[trial_id] = (as_utc(started), as_utc(updated))
            if metrics is not None:
                rows.setdefault(trial_id, []).append({**metrics, "generation": generation,
                                                      "created_at": as_utc(at)})
        exploits: dict[str, list[dict[str, Any]]] = {}
        q = (select(Trial.trial_id, Exploit.donor, Exploit.at, Exploit.config, Exploit.created_at)
             .join(Exploit, Exploit.trial_pk == Trial.id).where(Trial.sweep_id == sweep.id).order_by(Exploit.id))
        for trial_id, donor, at, config, created in s.execute(q):
            exploits.setdefault(trial_id, []).append({"donor": donor, "at": at, "config": config,
                                                      "created_at": as_utc(created)})
    for t in out["leaderboard"]:
        t["started_at"], t["updated_at"] = times.get(t["trial_id"], (None, None))
        t["results"] = rows.get(t["trial_id"], [])
        t["exploits"] = exploits.get(t["trial_id"], [])
    return out
