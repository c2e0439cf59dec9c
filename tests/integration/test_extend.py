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


OBJECTIVE = '''
from ray import tune


def train(config):
    for i in range(1, 10):
        tune.report({"loss": (config["x"] - 3) ** 2 + (0 if config["act"] == "gelu" else 0.5) + 1.0 / i, "i": i})
'''


def test_the_default_searcher_runs_each_config_of_a_finite_space_once_then_the_sweep_ends(ray_local, tmp_path,
                                                                                          storage):
    (tmp_path / "finite.py").write_text(OBJECTIVE)

    def spec(name: str, trials: int):
        return validate({"name": name, "storage": str(storage), "trainable": "finite:train",
                         "search": {"metric": "loss", "mode": "min", "num_trials": trials, "max_concurrent": 2,
                                    "max_t": 9, "space": {"x": {"choice": [1, 2, 3]},
                                                          "act": {"choice": ["relu", "gelu"]}}}}, spec_dir=tmp_path)

    def configs(summary: dict) -> list[tuple]:
        return sorted((t["config"]["x"], t["config"]["act"]) for t in summary["trials"])

    every = [(x, act) for x in (1, 2, 3) for act in ("gelu", "relu")]
    ended = run_sweep(spec("all", 20)).summary  # 6 configs: the searcher ends the sweep after them
    assert configs(ended) == every and not ended["interrupted"] and ended["best"]["config"] == {"x": 3, "act": "gelu"}
    with pytest.raises(SpecError) as e:
        extend_sweep(storage / "all", 1)
    assert e.value.problems == [("search.space", "every one of the 6 configs of the space has run; there is nothing "
                                                 "to add")]
    first = run_sweep(spec("part", 4))
    extended = extend_sweep(first.path, 5).summary  # the 2 configs left, not 5 trials
    assert configs(extended) == every and not extended["interrupted"]
    assert extended["extensions"] == [{"dir": "extend-1", "trials": 2, "warm_start": 4}]
