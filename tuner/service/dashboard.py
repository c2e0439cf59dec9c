"""``tuner dashboard``: a read-only web app over the sweep store (SQLite or any SQLAlchemy URL), live while sweeps
run. Pages: the sweeps list (with the cron schedules and their runs) and a page per sweep (``tuner.view``); both poll
the JSON API every few seconds and redraw. The API (``/api/...``, documented at ``/openapi.json``) backs every page.

Safe by default: it binds 127.0.0.1 and only reads. On any other address it refuses to start without a token; with a
token every request needs it (``Authorization: Bearer T``, or ``?token=T`` once, which sets a cookie). An error is a
one-line JSON message or a short page, never a traceback.
"""

from __future__ import annotations

import logging
import secrets
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import StarletteHTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Engine

from tuner import store
from tuner.service import jobs as ray_jobs
from tuner.view import figures, sweep_fragment, sweeps_fragment
from tuner.view.page import shell

LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "tuner_token"
TOKEN_ENV = "TUNER_DASHBOARD_TOKEN"
log = logging.getLogger(__name__)


class Unsafe(ValueError):
    """A dashboard on a non-loopback address without a token."""


def check_exposure(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise Unsafe(f"--host {host} exposes the sweep store beyond this machine: pass --token (or set {TOKEN_ENV}) "
                     f"so that every request needs it")


def _guard(app: FastAPI, token: str | None) -> None:
    """The token on every request (when there is one), and errors as one line: JSON for the API, a page else."""
    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if not token:
            return await call_next(request)
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if not secrets.compare_digest(given.encode(), token.encode()):
            return _error(request, 401, "a token is required: Authorization: Bearer <token>, or ?token=<token>")
        response: Response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def any_error(request: Request, exc: Exception) -> Response:
        log.exception("dashboard request %s failed", request.url.path)  # the traceback stays in the server's log
        return _error(request, 500, f"internal error ({type(exc).__name__}); see the dashboard's log")


def create_app(engine: Engine, token: str | None = None, jobs_address: str | None = None) -> FastAPI:
    """The app over ``engine``; with ``jobs_address`` (a Ray head's dashboard, http://HEAD:8265) it also lists
    the sweeps submitted there through tuner (Ray Jobs) with their states."""
    app = FastAPI(title="tuner dashboard", description="Sweeps, trials and their results, read from the sweep store.",
                  version="1")
    _guard(app, token)

    @app.get("/api/sweeps", summary="Every sweep, newest first")
    def api_sweeps() -> list[dict[str, Any]]:
        return [_listed(w) for w in store.list_sweeps(engine)]

    @app.get("/api/sweeps/{name}", summary="One sweep with its trials, each with every result it reported")
    def api_sweep(name: str) -> dict[str, Any]:
        sweep = _detail(engine, name)
        trials = sweep.pop("leaderboard")
        return {**_listed({**sweep, "trials": len(trials)}), "trials": store.jsonable(trials)}

    figures_of = _FigureCache()

    @app.get("/api/sweeps/{name}/view", summary="The sweep page's body and figures, for the live page")
    def api_sweep_view(name: str) -> dict[str, Any]:
        sweep = _detail(engine, name)
        return {"html": sweep_fragment(sweep), "figures": figures_of(sweep)}

    @app.get("/api/schedules", summary="Cron schedules, each with its 10 newest runs")
    def api_schedules() -> list[dict[str, Any]]:
        return store.jsonable(_schedules(engine))

    @app.get("/api/jobs", summary="The sweeps submitted through tuner to the Ray head given with --address")
    def api_jobs() -> Any:
        if not jobs_address:
            raise StarletteHTTPException(404, "no Ray cluster given: start the dashboard with --address "
                                              "http://HEAD:8265 to list its jobs")
        try:
            return ray_jobs.list_jobs(jobs_address)
        except ray_jobs.RemoteError as e:
            return JSONResponse({"error": str(e), "status": 502}, status_code=502)

    @app.get("/api/view", summary="The sweeps list's body, for the live page")
    def api_view() -> dict[str, Any]:
        return {"html": _listing(engine, jobs_address), "figures": {}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return shell("tuner: sweeps", _listing(engine, jobs_address), {}, plotly=_PLOTLY_TAG, live="api/view")

    @app.get("/sweeps/{name}", response_class=HTMLResponse, include_in_schema=False)
    def sweep_page(name: str) -> str:
        sweep = _detail(engine, name)
        return shell(f"tuner: {name}", sweep_fragment(sweep), figures_of(sweep), plotly=_PLOTLY_TAG,
                     live=f"../api/sweeps/{quote(name, safe='')}/view")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        from plotly.offline import get_plotlyjs

        return Response(get_plotlyjs(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    return app


_PLOTLY_TAG = '<script src="/static/plotly.min.js"></script>'


class _FigureCache:
    """A sweep's figures, drawn again only when the sweep changed: the live page asks every 2 s, and fANOVA takes a
    few hundred ms on a big sweep."""

    def __init__(self, size: int = 64):
        self.size = size
        self.drawn: dict[str, tuple[Any, dict[str, Any]]] = {}  # sweep -> (what they were drawn from, figures)

    def __call__(self, sweep: dict[str, Any]) -> dict[str, Any]:
        key = (sweep["status"], [(t["trial_id"], t["state"], len(t["results"]), len(t.get("exploits") or []),
                                  t["value"]) for t in sweep["leaderboard"]])
        if sweep["name"] not in self.drawn or self.drawn[sweep["name"]][0] != key:
            if len(self.drawn) >= self.size:
                self.drawn.clear()
            self.drawn[sweep["name"]] = (key, store.jsonable(figures(sweep)))
        return self.drawn[sweep["name"]][1]


def _listing(engine: Engine, jobs_address: str | None) -> str:
    """The sweeps list's body; with a Ray head, its tuner jobs (or the one line saying why they could not be
    listed)."""
    jobs: list[dict[str, Any]] | str | None = None
    if jobs_address:
        try:
            jobs = ray_jobs.list_jobs(jobs_address)
        except ray_jobs.RemoteError as e:
            jobs = str(e)
    return sweeps_fragment(store.list_sweeps(engine), _schedules(engine), jobs=jobs, jobs_address=jobs_address)


def _schedules(engine: Engine, runs: int = 10) -> list[dict[str, Any]]:
    """The cron schedules, each with its ``runs`` newest runs."""
    return [{**s, "runs": store.schedule_runs(engine, s["id"])[:runs]} for s in store.list_schedules(engine)]


def _detail(engine: Engine, name: str) -> dict[str, Any]:
    try:
        return store.sweep_detail(engine, name)
    except store.UnknownSweep:
        raise StarletteHTTPException(404, f"no sweep named {name!r} in the store") from None


def _listed(w: dict[str, Any]) -> dict[str, Any]:
    return store.jsonable({**w, "state": w["status"], "best": w["best_value"]})


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    return HTMLResponse(shell(f"tuner: {status}", f"<h1>{status}</h1><p>{escape(message)}</p><p><a href='/'>all "
                                                 f"sweeps</a></p>", {}, plotly=""), status_code=status)


def serve(engine: Engine, host: str, port: int, token: str | None, jobs_address: str | None = None) -> None:
    """Serve until interrupted. Unsafe on a non-loopback host without a token."""
    import uvicorn

    check_exposure(host, token)
    uvicorn.run(create_app(engine, token, jobs_address), host=host, port=port, log_level="warning")
