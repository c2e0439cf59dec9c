"""Real sweeps of tiny transformers LMs on one shared local Ray."""

from __future__ import annotations

import csv
import json
import math
from itertools import product

import pytest

from tuner.spec import validate
from tuner.sweep.driver import run_sweep

pytestmark = pytest.mark.integration
UNTRAINED = math.log(384)  # the byte-level vocabulary: a uniform guess


def test_asha_tpe_sweep_of_a_tiny_lm(ray_local, tiny_raw):
    spec = validate(tiny_raw(search={
        "algorithm": "tpe", "scheduler": "asha", "num_trials": 4, "max_concurrent": 2,
        "space": {"train.lr": {"loguniform": [1e-3, 3e-2]}, "train.batch_size": {"choice": [2, 4]},
                  "model.dropout": {"uniform": [0.0, 0.2]}}}))
    result = run_sweep(spec)
    summary = json.loads((result.path / "summary.json").read_text())
    assert len(summary["trials"]) == 4 and summary["metric"] == "val_loss" and summary["time_attr"] == "tokens"
    assert all(t["status"] == "TERMINATED" for t in summary["trials"])
    assert set(summary["trials"][0]["config"]) == {"train.lr", "train.batch_size", "model.dropout"}
    best = summary["best"]
    assert best["value"] < UNTRAINED - 1.0
    assert best["value"] == min(t["value"] for t in summary["trials"])
    assert (result.path / best["checkpoint"] / "state.pt").is_file()
    # Tokens are the fidelity: a batch-2 trial ran twice the steps of a batch-4 one for the same tokens.
    done = [t for t in summary["trials"] if t["state"] == "completed"]
    assert done and all(t["last_result"]["tokens"] == spec.train.max_steps * 4 * 32 for t in done)
    for t in done:
        assert t["last_result"]["step"] == spec.train.max_steps * 4 // t["config"]["train.batch_size"]
    c = summary["compute"]
    assert c["iterations"] == sum(t["iterations"] for t in summary["trials"])
    assert c["tokens"] == sum(t["last_result"]["tokens"] for t in summary["trials"])
    rows = list(csv.DictReader((result.path / "leaderboard.csv").open()))
    assert len(rows) == 4 and rows[0]["trial_id"] == best["trial_id"]

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(result.path / "best_model")
    assert model.config.hidden_size == 32


def test_grid_runs_every_combination(ray_local, tiny_raw):
    spec = validate(tiny_raw(search={
        "algorithm": "grid", "scheduler": "fifo",
        "space": {"train.batch_size": {"grid": [2, 4]}, "model.num_layers": {"choice": [1, 2]}}},
        train={"max_steps": 10}))
    summary = run_sweep(spec).summary
    combos = sorted((t["config"]["train.batch_size"], t["config"]["model.num_layers"]) for t in summary["trials"])
    assert combos == sorted(product([2, 4], [1, 2]))
    assert all(t["state"] == "completed" for t in summary["trials"])


def test_nan_trial_is_isolated(ray_local, tiny_raw):
    spec = validate(tiny_raw(search={"algorithm": "grid", "space": {"train.lr": {"grid": [3e-3, 1e4]}}},
                             train={"warmup_steps": 0}))
    summary = run_sweep(spec).summary
    by_lr = {t["config"]["train.lr"]: t for t in summary["trials"]}
    assert by_lr[1e4]["status"] == "ERROR" and by_lr[1e4]["state"] == "error"
    assert "not finite" in by_lr[1e4]["error"]
    assert by_lr[3e-3]["state"] == "completed" and summary["best"]["trial_id"] == by_lr[3e-3]["trial_id"]


OBJECTIVE = '''
from ray import tune


def train(config):
    # A multi-fidelity quadratic: the loss falls with iterations towards (x - 0.3)^2.
    for i in range(1, 28):
        tune.report({"loss": (config["x"] - 0.3) ** 2 + 1.0 / i, "i": i})
'''


def test_custom_trainable_with_asha(ray_local, tmp_path, storage):
    (tmp_path / "my_objective.py").write_text(OBJECTIVE)
    spec = validate({"name": "custom", "storage": str(storage), "trainable": "my_objective:train",
                     "search": {"metric": "loss", "mode": "min", "algorithm": "random", "scheduler": "asha",
                                "num_trials": 8, "max_concurrent": 2, "max_t": 27, "grace_period": 1,
                                "reduction_factor": 3, "space": {"x": {"uniform": [0.0, 1.0]}}}},
                    spec_dir=tmp_path)
    summary = run_sweep(spec).summary
    trials = summary["trials"]
    assert len(trials) == 8 and all(set(t["config"]) == {"x"} for t in trials)
    iterations = [t["iterations"] for t in trials]
    assert summary["compute"]["iterations"] == sum(iterations)
    assert min(iterations) < 27 and max(iterations) == 27  # ASHA stopped some early, let the best finish
    assert summary["compute"]["tokens"] is None
    best = summary["best"]
    assert best["value"] == pytest.approx((best["config"]["x"] - 0.3) ** 2 + 1 / 27)


TIMED = '''
import time

from ray import tune


def train(config):
    start = time.time()
    for i in range(1, 4):
        time.sleep(0.05)
        tune.report({"loss": (config["x"] - 0.3) ** 2 + (config["y"] - 2) ** 2 / i, "start": start,
                     "end": time.time()})
'''


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
def test_seeded_searchers_repeat_and_max_concurrent_holds(ray_local, tmp_path, storage, algorithm):
    (tmp_path / "timed.py").write_text(TIMED)

    def sweep(name: str) -> dict:
        spec = validate({"name": f"{algorithm}-{name}", "storage": str(storage), "trainable": "timed:train",
                         "search": {"metric": "loss", "algorithm": algorithm, "scheduler": "fifo", "seed": 7,
                                    "num_trials": 6, "max_concurrent": 1,
                                    "space": {"x": {"uniform": [0.0, 1.0]}, "y": {"randint": [0, 5]}}}},
                        spec_dir=tmp_path)
        return run_sweep(spec).summary

    a, b = sweep("a"), sweep("b")
    configs = [t["config"] for t in a["trials"]]
    assert configs == [t["config"] for t in b["trials"]]
    assert all(0 <= c["x"] <= 1 and c["y"] in range(5) for c in configs)
    spans = sorted((t["last_result"]["start"], t["last_result"]["end"]) for t in a["trials"])
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False))


def test_the_default_preset_judges_trials_at_rungs_and_extends_from_them(ray_local, tiny_raw):
    """mf-tpe on the tiny LM: every trial reports at each rung milestone (besides every eval_every), a stopped
    trial's values at the rungs it reached land in summary.json, the best is a trial that ran its whole length, and
    an extension replays the past rungs into its searcher."""
    raw = tiny_raw(train={"max_steps": 27, "eval_every": 9, "warmup_steps": 2},
                   search={"num_trials": 6, "max_concurrent": 2,
                           "space": {"train.lr": {"loguniform": [1e-4, 3e-2]}}})
    del raw["search"]["algorithm"], raw["search"]["scheduler"]
    spec = validate(raw)
    assert (spec.search.algorithm, spec.search.scheduler) == ("mftpe", "rung-asha")
    per_step = 4 * 32
    rungs = [level / per_step for level in (27 * per_step / 9, 27 * per_step / 3, 27 * per_step)]  # 1/27 < warmup
    assert rungs == [3.0, 9.0, 27.0]
    result = run_sweep(spec)
    summary = result.summary
    for t in summary["trials"]:
        with open(f"{t['path']}/result.json") as f:
            steps = [json.loads(line)["step"] for line in f]
        assert steps == [s for s in (3, 9, 18, 27) if s <= t["last_result"]["step"]]  # rungs 3, 9, 27; evals 9, 18
        assert [level / per_step for level, _ in t["rungs"]] == [s for s in rungs if s <= steps[-1]]
    stopped = [t for t in summary["trials"] if t["state"] == "stopped"]
    completed = [t for t in summary["trials"] if t["state"] == "completed"]
    assert stopped and completed, "rung-asha stops some trials early and lets the best finish"
    assert summary["best"]["trial_id"] in {t["trial_id"] for t in completed}

    from tuner.sweep.driver import extend_sweep

    extended = extend_sweep(result.path, 2).summary
    assert len(extended["trials"]) == 8 and extended["extensions"][0]["warm_start"] == 6
    assert extended["best"]["trial_id"] in {t["trial_id"] for t in extended["trials"] if t["state"] == "completed"}
