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


def report(name: Annotated[str, typer.Argument(help="The sweep's name.")],
           output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write it (default "
                                                                              "<storage>/<name>/report.html).")]
           = None,
           store: StoreOpt = None, storage: StorageOpt = DEFAULT_STORAGE) -> None:
    """Write one sweep's page (leaderboard, learning curves, parallel coordinates, importance) as a self-contained
    HTML file that opens offline."""
    from tuner import store as sweep_store
    from tuner.cli.options import open_store
    from tuner.view import figures, report_html

    engine = open_store(store, storage, sweep=name)
    try:
        sweep = sweep_store.sweep_detail(engine, name)
    except sweep_store.UnknownSweep as e:
        fail(f"{e} (pass --storage DIR or --store URL)", USAGE)
    path = output or Path(sweep["storage"]) / "report.html"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_html(sweep, figures(sweep)), encoding="utf-8")
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")
    out.print(str(path), highlight=False)
