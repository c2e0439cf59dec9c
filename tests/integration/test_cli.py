"""The command line end to end, as a user runs it: its own embedded Ray, the built-in corpus, real trials."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def tuner(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def test_run_then_results(tmp_path):
    r = tuner("run", str(REPO / "jobs" / "quickstart.yaml"), "--set", "search.num_trials=2",
              "--set", "train.max_steps=30", "--set", "train.eval_every=15", "--set", f"storage={tmp_path}",
              "--set", "name=t", "--set", "search.space.model.num_layers={choice: [1, 2]}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert len(summary["trials"]) == 2
    assert summary["best"]["value"] < 4.0  # untrained byte-level loss is ln 384 ~ 5.95
    assert "trials: 0 running, 2/2 done" in r.stderr  # the live progress line
    assert "best model:" in r.stdout and (tmp_path / "t" / "best_model" / "config.json").is_file()
    report = (tmp_path / "t" / "report.html").read_text()  # the sweep's page, beside summary.json
    assert summary["best"]["trial_id"] in report and 'id="fig-curves"' in report and "src=\"http" not in report

    again = tuner("results", str(tmp_path / "t"), cwd=tmp_path)
    assert again.returncode == 0 and summary["best"]["trial_id"] in again.stdout
    as_json = tuner("results", str(tmp_path / "t"), "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout)["best"] == summary["best"]

    clash = tuner("run", str(REPO / "jobs" / "quickstart.yaml"), "--set", f"storage={tmp_path}", "--set", "name=t",
                  cwd=tmp_path)
    assert clash.returncode == 2 and "already holds a sweep" in clash.stderr
    assert json.loads((tmp_path / "t" / "summary.json").read_text()) == summary  # nothing lost
