"""tuner dashboard: a real uvicorn server on loopback over a real SQLite store; the JSON API, its OpenAPI document,
the pages, live reads, the token, and bad input (unknown sweep, unopenable store, an exposed host without a token)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import DashboardServer as Server
from support import fill_sweep_store as fill
from support import free_port

from tuner import store
from tuner.service.dashboard import Unsafe, check_exposure


@pytest.fixture
def engine(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """The store on SQLite and on a throwaway PostgreSQL: the dashboard reads either."""
    e = store.open_store(store_url, tmp_path)
    yield e
    e.dispose()


def test_an_empty_store_lists_no_sweeps(engine: Any) -> None:
    with Server(engine) as s:
        assert s.get("/api/sweeps")[0:3:2] == (200, "[]")
        status, _, page = s.get("/")
        assert status == 200 and "No sweeps in this store yet" in page


def test_the_api_lists_sweeps_and_gives_each_with_its_trials_and_results(engine: Any) -> None:
    fill(engine)
    with Server(engine) as s:
        status, _, body = s.get("/api/sweeps")
        [listed] = json.loads(body)
        assert status == 200 and listed["name"] == "s1" and listed["state"] == "running"
        assert listed["best"] == pytest.approx(3.0 - 0.6 - 0.3)
        sweep = json.loads(s.get("/api/sweeps/s1")[2])
        assert [t["trial_id"] for t in sweep["trials"]][0] == "t3"  # ranked, best first
        assert all(len(t["results"]) == 3 for t in sweep["trials"])
        assert sweep["trials"][0]["results"][-1]["val_loss"] == pytest.approx(2.1)
        paths = json.loads(s.get("/openapi.json")[2])["paths"]
        assert {"/api/sweeps", "/api/sweeps/{name}"} <= set(paths)


def test_the_sweep_page_draws_every_figure_and_new_reports_show_without_a_reload(engine: Any) -> None:
    fill(engine)
    with Server(engine) as s:
        status, _, page = s.get("/sweeps/s1")
        assert status == 200 and "t3" in page and '<script src="/static/plotly.min.js">' in page
        assert s.get("/static/plotly.min.js")[0] == 200
        view = json.loads(s.get("/api/sweeps/s1/view")[2])
        assert set(view["figures"]) == {"progress", "curves", "parallel", "importance"}
        curves = view["figures"]["curves"]["data"]
        assert any("stopped" in (tr.get("hovertemplate") or "") for tr in curves)  # where a scheduler stopped t0
        # The live page polls this endpoint: a trial recorded now is in its next answer.
        store.record_trial(engine, _sweep_pk(engine), "late", config={"train.lr": 5e-3}, status="running")
        assert "late" in json.loads(s.get("/api/sweeps/s1/view")[2])["html"]


def _sweep_pk(engine: Any) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        return session.scalar(select(store.Sweep.id).where(store.Sweep.name == "s1"))


def test_an_unknown_sweep_is_a_404_page_and_a_json_error(engine: Any) -> None:
    with Server(engine) as s:
        status, headers, body = s.get("/api/sweeps/nope")
        assert status == 404 and json.loads(body)["error"] == "no sweep named 'nope' in the store"
        status, headers, page = s.get("/sweeps/nope", {"Accept": "text/html"})
        assert status == 404 and headers["content-type"].startswith("text/html") and "Traceback" not in page


def test_with_a_token_every_request_needs_it(engine: Any) -> None:
    fill(engine)
    with Server(engine, token="s3cret") as s:
        assert s.get("/api/sweeps")[0] == 401
        assert s.get("/openapi.json")[0] == 401
        assert s.get("/api/sweeps", {"Authorization": "Bearer wrong"})[0] == 401
        assert s.get("/api/sweeps", {"Authorization": "Bearer s3cret"})[0] == 200
        status, headers, _ = s.get("/?token=s3cret")
        assert status == 200 and "tuner_token=s3cret" in headers["set-cookie"]
        assert s.get("/sweeps/s1", {"Cookie": "tuner_token=s3cret"})[0] == 200


def test_any_other_host_than_loopback_needs_a_token() -> None:
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "t")
    with pytest.raises(Unsafe, match="--token"):
        check_exposure("0.0.0.0", None)
    cli = subprocess.run([sys.executable, "-m", "tuner", "dashboard", "--host", "0.0.0.0"], capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 2 and "--token" in cli.stderr and "Traceback" not in cli.stderr


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/tuner.db", "postgresql+psycopg://u@127.0.0.1:1/db"])
def test_a_store_that_cannot_be_opened_is_one_line_and_exit_1(url: str) -> None:
    cli = subprocess.run([sys.executable, "-m", "tuner", "dashboard", "--store", url, "--port", str(free_port())],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1, cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1 and "Traceback" not in cli.stderr


def test_schedules_with_their_runs(engine: Any) -> None:
    from datetime import datetime, timezone

    sched = store.add_schedule(engine, "nightly", spec_path="/jobs/q.yaml", cron="0 2 * * *", address=None,
                               overrides=[], warm_start=3)
    assert store.claim_run(engine, sched["id"], datetime(2026, 12, 6, 2, tzinfo=timezone.utc), "tuner-abc")
    with Server(engine) as s:
        [listed] = json.loads(s.get("/api/schedules")[2])
        assert listed["name"] == "nightly" and [r["submission_id"] for r in listed["runs"]] == ["tuner-abc"]
        page = s.get("/")[2]
        assert "Scheduled runs" in page and "nightly" in page
