"""--json: one JSON document on stdout and nothing else there, for the commands that print data and need no Ray
(validate, sweeps list/show, schedule list; results, jobs and submit are covered where a sweep or a head runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import fill_sweep_store

from tuner import store

REPO = Path(__file__).resolve().parents[3]


def tuner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True, text=True, timeout=120)


def as_json(*args: str) -> Any:
    r = tuner(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_validate_prints_the_resolved_spec() -> None:
    spec = as_json("validate", str(REPO / "jobs" / "quickstart.yaml"), "--set", "train.lr=1e-3")
    assert spec["name"] == "quickstart" and spec["train"]["lr"] == 1e-3 and spec["search"]["preset"] == "mf-tpe"


def test_sweeps_and_schedules_from_the_store(tmp_path: Path) -> None:
    engine = store.open_store(None, tmp_path)
    fill_sweep_store(engine)
    engine.dispose()
    [listed] = as_json("sweeps", "list", "--storage", str(tmp_path))
    assert listed["name"] == "s1" and listed["trials"] == 4
    board = as_json("sweeps", "show", "s1", "--storage", str(tmp_path))
    assert [t["rank"] for t in board["leaderboard"]] == [1, 2, 3, 4]
    assert as_json("schedule", "list", "--storage", str(tmp_path)) == []


def test_a_bad_spec_still_exits_2_with_nothing_on_stdout(tmp_path: Path) -> None:
    r = tuner("validate", str(REPO / "jobs" / "quickstart.yaml"), "--set", "train.lr=-1", "--json")
    assert r.returncode == 2 and r.stdout == "" and "train.lr" in r.stderr
