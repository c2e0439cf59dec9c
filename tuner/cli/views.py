"""``tuner dashboard`` (the live web app over the sweep store) and ``tuner report`` (one sweep's page as an offline
HTML file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tuner.cli.options import DEFAULT_STORAGE, FAILURE, USAGE, StorageOpt, StoreOpt, err, fail, out


def dashboard(store: StoreOpt = None, storage: StorageOpt = DEFAULT_STORAGE,
              host: Annotated[str, typer.Option(help="Address to bind; any other than loopback needs --token.")]
              = "127.0.0.1",
              port: Annotated[int, typer.Option(help="Port to listen on.")] = 8266,
              token: Annotated[str | None, typer.Option(help="Require this token on every request (default: "
                                                             "TUNER_DASHBOARD_TOKEN).")] = None,
              address: Annotated[str | None, typer.Option("--address", help="Also list the sweeps submitted to this "
                                                          "Ray head, http://HEAD:8265 (default: RAY_ADDRESS if "
                                                          "set).")] = None) -> None:
    """Serve a read-only, live dashboard of the sweep store's sweeps (Ctrl+C stops it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tuner import store as sweep_store
    from tuner.service.dashboard import TOKEN_ENV, Unsafe, check_exposure, serve

    token = token or os.environ.get(TOKEN_ENV) or None
    try:
        check_exposure(host, token)
    except Unsafe as e:
        fail(str(e), USAGE)
    try:
        engine = sweep_store.open_store(store, storage, create=False)
        sweep_store.list_sweeps(engine)  # opened means readable: fail here, in one line, not on the first request
    except sweep_store.NoStore as e:
        fail(f"{e} (pass --storage DIR or --store URL)", FAILURE)
    except (sweep_store.StoreError, SQLAlchemyError) as e:
        fail(f"cannot open the sweep store: {str(e).splitlines()[0]}", FAILURE)
    err.print(f"tuner dashboard on http://{host}:{port}/ (store {sweep_store.safe_url(engine.url)})",
              highlight=False)
    serve(engine, host, port, token, address or os.environ.get("RAY_ADDRESS") or None)


def report(name: Annotated[str, typer.Argument(help="The sweep's name, or its directory.")],
           output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write it (default "
                                                                              "<storage>/<name>/report.html).")]
           = None,
           store: StoreOpt = None, storage: StorageOpt = DEFAULT_STORAGE) -> None:
    """Write one sweep's page (leaderboard, learning curves, parallel coordinates, importance) as a self-contained
    HTML file that opens offline: from the sweep store, or from the sweep's directory when the store lacks it."""
    from tuner import store as sweep_store
    from tuner._util.storage import Bucket, StorageError, is_remote
    from tuner.spec import SpecError
    from tuner.sweep.records import local_dir, sweep_from_dir
    from tuner.view import figures, report_html

    remote = is_remote(name)
    d: Path | None = None if remote else Path(name) if Path(name).is_dir() else storage / name
    sweep = None
    if not remote and not Path(name).is_dir():
        try:
            engine = sweep_store.open_store(store, storage, create=False)
            try:
                sweep = sweep_store.sweep_detail(engine, name)
            finally:
                engine.dispose()
        except (sweep_store.NoStore, sweep_store.UnknownSweep):
            pass  # the sweep's directory may still hold it
        except sweep_store.StoreError as e:
            fail(f"--store: {e}", USAGE)
    if sweep is None:
        try:
            d = local_dir(name) if remote else d
        except StorageError as e:
            fail(f"storage: {e}")
        except SpecError as e:
            fail(f"{name}: {e.problems[0][1]}", USAGE)
        assert d is not None
        if not (d / "summary.json").is_file():
            fail(f"no sweep named {name!r} in the sweep store, and no summary.json in {name if remote else d} (pass "
                 f"--storage DIR or --store URL)", USAGE)
        try:
            sweep = sweep_from_dir(d)
        except (ValueError, KeyError, TypeError) as e:
            fail(f"{d}: not a tuner sweep directory ({type(e).__name__}: {e})", USAGE)
        if remote:
            sweep["storage"] = name
    bucket = Bucket(sweep["storage"].rstrip("/")) if is_remote(sweep["storage"]) else None
    path = output or (bucket.mirror() if bucket else Path(sweep["storage"])) / "report.html"
    shown = str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_html(sweep, figures(sweep)), encoding="utf-8")
        if bucket is not None and output is None:
            bucket.upload(path, "report.html")
            shown = bucket.child("report.html").uri
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")
    out.print(shown, highlight=False)
