"""Sweeps submitted to a real local head (`ray start --head` on 127.0.0.1, token auth on) through the Jobs API:
`tuner submit --wait`, `tuner jobs`, and the one-line connection/auth errors. (The raw `ray job submit` path is
tests/integration/test_rehearsal.py's: its spread trial goes to the rehearsed pool that way.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import DashboardServer, PlacementGroupWatch, wait_until

from tuner import store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VENV_BIN = Path(sys.executable).parent


def tuner(*args: str, env: dict | None = None, timeout: int = 400) -> subprocess.CompletedProcess:
    base = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    base.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def job_dir(shipped_job) -> Path:
    return shipped_job("remote").parent


def test_submit_and_wait_runs_the_sweep_on_the_head(ray_head, job_dir, tmp_path):
    started, submitted_at = time.monotonic(), time.time()
    r = tuner("submit", str(job_dir / "spec.yaml"), "--address", ray_head.dashboard, "--wait",
              "--set", "search.num_trials=2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    job = r.stdout.split("submitted ", 1)[1].split()[0]
    assert f"{job}: SUCCEEDED" in r.stdout and "best:" in r.stdout  # the sweep's own output, followed
    summary = json.loads((tmp_path / "sweeps" / "remote" / "summary.json").read_text())
    assert len(summary["trials"]) == 2 and summary["best"]["value"] < 5.0
    first = min(json.loads(line)["timestamp"] for f in (tmp_path / "sweeps" / "remote").glob("trial_*/result.json")
                for line in f.read_text().splitlines())
    print(f"submit to first result: {first - submitted_at:.0f} s (1 s resolution); "
          f"to the finished sweep: {time.monotonic() - started:.1f} s")

    listed = tuner("jobs", "list", "--address", ray_head.dashboard)
    assert listed.returncode == 0 and job in listed.stdout and "SUCCEEDED" in listed.stdout
    status = tuner("jobs", "status", job, "--address", ray_head.dashboard)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    as_json = tuner("jobs", "list", "--address", ray_head.dashboard, "--json")  # one JSON document on stdout
    assert {"job": job, "status": "SUCCEEDED"}.items() <= next(j for j in json.loads(as_json.stdout)
                                                               if j["job"] == job).items()
    assert json.loads(tuner("jobs", "status", job, "--address", ray_head.dashboard, "--json").stdout)["status"] \
        == "SUCCEEDED"
    engine = store.open_store(None, tmp_path / "dashboard")
    with DashboardServer(engine, jobs_address=ray_head.dashboard) as dashboard:  # the dashboard lists it too
        listed_there = json.loads(dashboard.get("/api/jobs")[2])
        assert any(j["job"] == job and j["status"] == "SUCCEEDED" for j in listed_there)
        assert job in dashboard.get("/")[2]
    engine.dispose()
    logs = tuner("jobs", "logs", job, "--address", ray_head.dashboard)
    assert logs.returncode == 0 and "best:" in logs.stdout
    missing = tuner("jobs", "status", "tuner-nope", "--address", ray_head.dashboard)
    assert missing.returncode == 1 and "no job tuner-nope" in missing.stderr


def test_a_stopped_job_frees_its_sharded_trials_workers(ray_head, job_dir):
    """`tuner submit --json` prints one JSON document; `tuner jobs stop` on the running sweep of a sharded trial
    (2 workers x 1 CPU: the whole head) ends its Train run: the workers' placement group is gone within 10 s."""
    r = tuner("submit", str(job_dir / "spec.yaml"), "--address", ray_head.dashboard, "--json",
              "--set", "search.num_trials=1", "--set", "name=remote-json", "--set", "train.max_steps=100000",
              "--set", "resources.workers_per_trial=2", "--set", "resources.cpus_per_worker=1")
    assert r.returncode == 0, r.stderr[-3000:]
    job = json.loads(r.stdout)["job_id"]
    with PlacementGroupWatch(lambda: _placement_groups(ray_head.dashboard), every=0.2) as watch:
        wait_until(lambda: any("CREATED" in g for g in watch.runs(bundles=2)), "the trial's Train run to start",
                   timeout=180)
        stopped = time.time()
        assert tuner("jobs", "stop", job, "--address", ray_head.dashboard).returncode == 0
        run = watch.runs(bundles=2)[0]
        wait_until(lambda: "REMOVED" in run, "the Train run's placement group to go", timeout=60)
    print(f"the stopped job's workers were freed {run['REMOVED'] - stopped:.1f} s after `tuner jobs stop`")
    assert run["REMOVED"] - stopped < 10
    assert wait_until(lambda: tuner("jobs", "status", job, "--address", ray_head.dashboard).stdout.count("STOPPED"),
                      "the job to be STOPPED", timeout=60)


def _placement_groups(dashboard: str) -> dict[str, tuple[str, int]]:
    from ray.util.state import list_placement_groups

    return {g.placement_group_id: (g.state, len(g.bundles or ())) for g in
            list_placement_groups(address=dashboard, detail=True, raise_on_missing_output=False)}


def test_a_bad_spec_is_refused_before_anything_is_submitted(ray_head, job_dir):
    r = tuner("submit", str(job_dir / "spec.yaml"), "--address", ray_head.dashboard, "--set", "train.lr=-1")
    assert r.returncode == 2 and "train.lr" in r.stderr
    assert "submitted" not in r.stdout


def test_unreachable_address_and_missing_token_are_one_line_errors(ray_head, job_dir):
    closed = f"http://127.0.0.1:{closed_port()}"
    r = tuner("jobs", "list", "--address", closed)
    assert r.returncode == 1 and f"cannot reach a Ray cluster at {closed}" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = tuner("submit", str(job_dir / "spec.yaml"), "--address", ray_head.dashboard, env={"RAY_AUTH_MODE": "disabled"})
    assert r.returncode == 1 and "requires a token" in r.stderr and "RAY_AUTH_MODE=token" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
