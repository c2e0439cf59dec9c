"""tuner resume --retry-errored / --restart-errored: a finished sweep's errored trial runs again, from its last
checkpoint or from scratch; the finished trial does not; summary.json and the store show the new outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner import store
from tuner.spec import validate
from tuner.sweep.driver import resume_sweep, run_sweep

pytestmark = pytest.mark.integration

OBJECTIVE = '''
import json
import os
import tempfile
from pathlib import Path

from ray import tune

FAIL = Path(__file__).with_name("fail")  # while it exists, the x < 0.5 trial fails at its third report


def train(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            start = json.loads((Path(d) / "i.json").read_text())
    for i in range(start + 1, 7):
        if i == 3 and config["x"] < 0.5 and FAIL.exists():
            raise RuntimeError("planned failure")
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "i.json").write_text(json.dumps(i))
            tune.report({"loss": config["x"] + 1 / i, "resumed_at": start, "pid": os.getpid()},
                        checkpoint=tune.Checkpoint.from_directory(d))
'''


def errored_sweep(tmp_path: Path, storage: Path, name: str) -> tuple[Path, dict]:
    (tmp_path / "errs.py").write_text(OBJECTIVE)
    (tmp_path / "fail").touch()
    spec = validate({"name": name, "storage": str(storage), "trainable": "errs:train",
                     "search": {"metric": "loss", "mode": "min", "algorithm": "grid", "scheduler": "fifo",
                                "max_t": 6, "space": {"x": {"grid": [0.2, 0.8]}}}}, spec_dir=tmp_path)
    first = run_sweep(spec).summary
    states = sorted((t["config"]["x"], t["state"]) for t in first["trials"])
    assert states == [(0.2, "error"), (0.8, "completed")]
    (tmp_path / "fail").unlink()
    return spec.sweep_dir, first


@pytest.mark.parametrize("how, resumed_at", [("retry", 2), ("restart", 0)])
def test_errored_trials_run_again(ray_local, tmp_path, storage, how, resumed_at):
    sweep_dir, first = errored_sweep(tmp_path, storage, f"errored-{how}")
    done_before = next(t for t in first["trials"] if t["config"]["x"] == 0.8)
    summary = resume_sweep(sweep_dir, errored=how).summary
    again = {t["config"]["x"]: t for t in summary["trials"]}
    assert again[0.2]["state"] == "completed" and again[0.2]["iterations"] == 6
    assert again[0.2]["last_result"]["resumed_at"] == resumed_at  # its last checkpoint (report 2) or scratch
    assert again[0.8]["last_result"]["pid"] == done_before["last_result"]["pid"]  # the finished trial did not rerun
    assert summary["best"]["config"]["x"] == 0.2
    assert json.loads((sweep_dir / "summary.json").read_text())["best"] == summary["best"]
    engine = store.open_store(None, storage)
    board = store.sweep_leaderboard(engine, sweep_dir.name)
    engine.dispose()
    assert board["status"] == "finished" and sorted(t["state"] for t in board["leaderboard"]) == ["completed"] * 2
