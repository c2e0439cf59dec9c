"""A sweep whose compute budget runs out: no trial starts after it, running ones stop at their next checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuner.spec import validate
from tuner.sweep.driver import run_sweep

pytestmark = pytest.mark.integration

OBJECTIVE = '''
import tempfile
import time
from pathlib import Path

from ray import tune


def train(config):
    for i in range(1, 41):
        time.sleep(0.25)  # each iteration costs its trial a quarter of a CPU-second: the budget runs out mid-trial
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "iteration").write_text(str(i))
            tune.report({"loss": config["x"] + 1.0 / i}, checkpoint=tune.Checkpoint.from_directory(d))
'''


def test_a_spent_cpu_budget_ends_the_sweep(ray_local, tmp_path, storage):
    (tmp_path / "slow_objective.py").write_text(OBJECTIVE)
    limit_s = 4.0  # CPU-seconds: two 1-CPU trials spend it in about 2 s of their 10
    spec = validate({"name": "budget-cpu", "storage": str(storage), "trainable": "slow_objective:train",
                     "budget": {"cpu_hours": limit_s / 3600},
                     "search": {"metric": "loss", "mode": "min", "algorithm": "random", "scheduler": "fifo",
                                "num_trials": 6, "max_concurrent": 2, "space": {"x": {"uniform": [0.0, 1.0]}}}},
                    spec_dir=tmp_path)
    summary = run_sweep(spec).summary
    assert summary["ended_by"] == "budget" and not summary["interrupted"]
    budget = summary["compute"]["budget"]
    assert budget["ended_by"] == "cpu_hours"
    assert budget["spent"]["cpu_hours"] >= budget["limits"]["cpu_hours"]
    started = [t for t in summary["trials"] if t["iterations"] > 0]
    assert 1 <= len(started) <= 2  # no trial started once the budget was spent
    for t in started:
        assert t["iterations"] < 40  # stopped early ...
        latest = max(Path(t["path"]).glob("checkpoint_*"))
        assert (latest / "iteration").read_text() == str(t["iterations"])  # ... at a result with its checkpoint
    # The spend overshoots the limit by at most each running trial's last interval (the one that ended it).
    last_intervals = sum(t["last_result"]["time_this_iter_s"] for t in started)
    assert budget["spent"]["cpu_hours"] * 3600 <= limit_s + last_intervals + 1e-6
    assert json.loads((spec.sweep_dir / "budget.json").read_text())["ended_by"] == "cpu_hours"
