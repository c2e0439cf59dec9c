"""`tuner extend`: more trials for a finished sweep, warm-started from its observations, in one summary."""

from __future__ import annotations

import json

import pytest

from tuner.spec import SpecError, validate
from tuner.store import open_store, sweep_leaderboard
from tuner.sweep.driver import extend_sweep, run_sweep

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_extend_adds_warm_started_trials_to_a_finished_sweep(ray_local, tiny_raw, storage):
    spec = validate(tiny_raw(search={"algorithm": "tpe", "scheduler": "fifo", "num_trials": 3, "max_concurrent": 2,
                                     "space": {"train.lr": {"loguniform": [1.0e-3, 3.0e-2]},
                                               "train.batch_size": {"choice": [2, 4]}}}))
    first = run_sweep(spec)
    assert len(first.trials) == 3
    result = extend_sweep(first.path, 2)
    summary = json.loads((first.path / "summary.json").read_text())
    assert len(summary["trials"]) == 5 and summary["extensions"] == [{"dir": "extend-1", "trials": 2,
                                                                       "warm_start": 3}]
    assert [t["trial_id"] for t in summary["trials"][:3]] == [t["trial_id"] for t in first.trials]
    assert len(list((first.path / "extend-1").glob("trial_*/result.json"))) == 2
    assert summary["best"]["value"] == min(t["value"] for t in summary["trials"])
    assert summary["compute"]["iterations"] == sum(t["iterations"] for t in summary["trials"])
    new_configs = [t["config"] for t in summary["trials"][3:]]
    assert not any(c in [t["config"] for t in first.trials] for c in new_configs)  # past points are not re-run
    board = sweep_leaderboard(open_store(None, storage), spec.name)
    assert len(board["leaderboard"]) == 5 and board["status"] == "finished"
    assert result.summary == summary

    with pytest.raises(SpecError) as e:  # a sweep still running (or killed) is resumed, not extended
        extend_sweep(first.path / "extend-1", 1)
    assert e.value.problems[0][0] == "name"
