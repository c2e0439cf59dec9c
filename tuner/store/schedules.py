"""Cron schedules of sweeps (``tuner.service.cron``) and their runs: one row per fire time, whose insert is the
claim that makes a run happen exactly once however many schedulers look."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Engine, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tuner.store.engine import Base, StoreError, as_utc, now


class Schedule(Base):
    """A sweep submitted to a Ray cluster on a cron schedule (``tuner.service.cron``); its runs are ``ScheduleRun``s."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    spec_path: Mapped[str] = mapped_column(Text)
    cron: Mapped[str] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(Text)
    overrides: Mapped[list[str]] = mapped_column(JSON, default=list)  # --set a.b=c, in order
    last_fired: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    warm_start: Mapped[int] = mapped_column(Integer, default=3)  # each run starts from the previous run's best K


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
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ScheduleExists(StoreError):
    pass


class UnknownSchedule(StoreError, KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no schedule named {self.name!r} in the store"


def _in_utc(t: datetime) -> datetime:
    # SQLite keeps no offset: every stored time is UTC, so one due time always maps to one row.
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _run_dict(run: ScheduleRun) -> dict[str, Any]:
    return {"id": run.id, "schedule_id": run.schedule_id, "due_at": as_utc(run.due_at),
            "submission_id": run.submission_id, "status": run.status, "sweep_name": run.sweep_name,
            "job_id": run.job_id, "warm_points": run.warm_points, "error": run.error,
            "claimed_at": as_utc(run.claimed_at), "updated_at": as_utc(run.updated_at)}


def _schedule_dict(s: Session, sched: Schedule) -> dict[str, Any]:
    last = s.scalar(select(ScheduleRun).where(ScheduleRun.schedule_id == sched.id)
                    .order_by(ScheduleRun.due_at.desc()).limit(1))
    return {"id": sched.id, "name": sched.name, "spec_path": sched.spec_path, "cron": sched.cron,
            "address": sched.address, "overrides": list(sched.overrides or []), "enabled": sched.enabled,
            "warm_start": 3 if sched.warm_start is None else sched.warm_start, "created_at": as_utc(sched.created_at),
            "last_fired": as_utc(sched.last_fired), "last_run": _run_dict(last) if last else None}


def add_schedule(engine: Engine, name: str, *, spec_path: str, cron: str, address: str | None,
                 overrides: list[str], warm_start: int, created_at: datetime | None = None) -> dict[str, Any]:
    """Store a new schedule (as in list_schedules); ScheduleExists if one has that name. It fires only at times
    after ``created_at`` (default now)."""
    from sqlalchemy.exc import IntegrityError

    with Session(engine) as s:
        sched = Schedule(name=name, spec_path=spec_path, cron=cron, address=address, overrides=list(overrides),
                         warm_start=warm_start, enabled=True, created_at=_in_utc(created_at or now()))
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
        run.updated_at = now()
        s.commit()
