"""The sweep store's engine: opening it (SQLite by default, any SQLAlchemy URL), the declarative base of its tables
(``tuner.store.sweeps``, ``tuner.store.schedules``), and what every table shares.

The store holds sweeps, their trials, every result row the trials reported, and schedules, in one SQL database.

By default an embedded SQLite file, ``<storage>/tuner.db``; for a team, any SQLAlchemy URL (``postgresql://...``).
It has one writer, the sweep driver (through ``tuner.sweep.callbacks.store.StoreCallback``), which commits each
result as it arrives: a killed driver loses nothing already reported. Trials never open the store (Optuna's
shared-database storage deadlocks under parallel writers); readers (``tuner sweeps``) may look at it while a sweep runs.

Metrics are stored as JSON with non-finite floats (a diverged loss) as null, which every database accepts.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

DB_FILE = "tuner.db"
BUSY_TIMEOUT_MS = 30_000  # a reader holding SQLite's lock makes the writer wait, never fail
# Database drivers whose pip name differs from the module SQLAlchemy imports.
_DRIVERS = {"psycopg2": "tuner[postgres]", "MySQLdb": "mysqlclient", "psycopg": "tuner[postgres]"}


class StoreError(Exception):
    """A store that cannot be opened (bad URL, missing driver) or a sweep it does not hold."""


class NoStore(StoreError):
    """The store's SQLite file does not exist (yet): no sweep ever ran with it."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(t: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones; every stored time is UTC)."""
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


class Base(DeclarativeBase):
    pass


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


def open_store(url: str | None, storage_dir: str | Path, *, create: bool = True, upgrade: bool = True) -> Engine:
    """An engine on the store (tables created if missing). StoreError if the URL or its driver is unusable, or, without
    ``create``, if the store is a SQLite file that does not exist (readers create nothing)."""
    raw = store_url(url, storage_dir)
    try:
        u = make_url(raw)
    except ArgumentError:
        raise StoreError(f"store {raw!r} is not a database URL (e.g. sqlite:///path/tuner.db, "
                         f"postgresql://host/db)") from None
    sqlite = u.get_backend_name() == "sqlite"
    if u.drivername == "postgresql" and _importable("psycopg") and not _importable("psycopg2"):
        u = u.set(drivername="postgresql+psycopg")  # tuner[postgres] brings psycopg 3; SQLAlchemy's default is 2
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
    try:
        if upgrade:
            migrate(engine)
        else:
            with engine.connect():
                pass  # reachable, at least
    except SQLAlchemyError as e:  # unreachable, refused, no such database: one line, not a driver's traceback
        engine.dispose()
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise StoreError(f"store {safe_url(u)} cannot be opened: {reason[0] if reason else type(e).__name__}") \
            from None
    return engine


BASELINE = ("sweeps", "trials", "results", "schedules", "schedule_runs")  # the tables before migrations (0001)


def _alembic(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the store's schema to this tuner's (alembic migrations in ``tuner/store/migrations``): a new store gets
    every table at the newest revision; a store from before migrations is stamped at the baseline first. Returns
    (the revision it was at, the one it is at now). Cheap when nothing is to do: one read of its revision."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    with engine.begin() as conn:
        cfg = _alembic(conn)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        assert head is not None
        was = MigrationContext.configure(conn).get_current_revision()
        if was == head:
            return was, head
        tables = set(inspect(conn).get_table_names())
        if was is None and not tables & set(BASELINE):  # a new store: today's schema, stamped as such
            Base.metadata.create_all(conn)
            command.stamp(cfg, "head")
            return None, head
        if was is None:  # made before migrations: whatever baseline tables it lacks, then the baseline's stamp
            Base.metadata.create_all(conn, tables=[Base.metadata.tables[t] for t in BASELINE])
            command.stamp(cfg, "0001")
        command.upgrade(cfg, "head")
        return was, head


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def safe_url(url: Any) -> str:
    """A store URL fit to print: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


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


