"""``tuner store upgrade``: bring a sweep store's schema to this tuner's (alembic migrations). Every command that
opens a store does it too; this one does only that, and says from which revision to which."""

from __future__ import annotations

import typer

from tuner.cli.options import DEFAULT_STORAGE, USAGE, StorageOpt, StoreOpt, fail, out

store_app = typer.Typer(no_args_is_help=True, help="The sweep store itself.")


@store_app.command("upgrade")
def store_upgrade(storage: StorageOpt = DEFAULT_STORAGE, store: StoreOpt = None) -> None:
    """Apply the store's schema migrations (a new store gets every table)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner import store as sweep_store

    try:
        engine = sweep_store.open_store(store, storage, upgrade=False)
    except sweep_store.StoreError as e:
        fail(f"--store: {e}", USAGE)
    try:
        was, now = sweep_store.migrate(engine)
    except SQLAlchemyError as e:
        fail(f"migrating {sweep_store.safe_url(engine.url)} failed: {str(e).splitlines()[0]}")
    finally:
        engine.dispose()
    what = "already at" if was == now else f"upgraded from {was or 'a new or pre-migration store'} to"
    out.print(f"{sweep_store.safe_url(engine.url)}: {what} revision {now}", highlight=False)
