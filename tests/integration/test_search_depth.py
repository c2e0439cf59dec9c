"""Every searcher and every scheduler runs a real sweep; PB2 exploits on the real LLM trial. (PBT's exploit is the
same path, PB2 only picks the new config differently; test_sharded runs PBT on sharded LLM trials.)"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuner import store
from tuner.spec import validate
from tuner.sweep.driver import run_sweep

pytestmark = pytest.mark.integration

OBJECTIVE = '''
import json
import os
import tempfile

from ray import tune


def train(config):
    """A multi-fidelity quadratic that checkpoints every iteration (so schedulers may pause, resume, exploit)."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["i"]
    for i in range(start + 1, 13):
        loss = (config["x"] - 0.3) ** 2 + (config.get("n", 3) - 3) ** 2 / 10 + 1.0 / i
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"i": i}, f)
            tune.report({"loss": loss, "i": i}, checkpoint=tune.Checkpoint.from_directory(d))
'''


def custom_sweep(tmp_path, storage, name: str, **search) -> dict:
    (tmp_path / "objective.py").write_text(OBJECTIVE)
    space = search.pop("space", {"x": {"uniform": [0.0, 1.0]}, "n": {"randint": [1, 6]}})
    search = {"metric": "loss", "mode": "min", "max_t": 12, "max_concurrent": 2, "seed": 1, "space": space, **search}
    search = {k: v for k, v in search.items() if v is not None}
    spec = validate({"name": name, "storage": str(storage), "trainable": "objective:train", "search": search},
                    spec_dir=tmp_path)
    return run_sweep(spec).summary


SEARCHERS = [("grid", {}), ("random", {}), ("tpe", {}), ("mftpe", {}), ("bayesopt", {"acquisition": "ei"}),
             ("optuna", {"sampler": "tpe"}), ("optuna", {"sampler": "gp"}), ("optuna", {"sampler": "cmaes"})]


@pytest.mark.parametrize(("algorithm", "options"), SEARCHERS, ids=[f"{a}-{o}" for a, o in SEARCHERS])
def test_every_searcher_runs_a_real_sweep(ray_local, tmp_path, storage, algorithm, options):
    space = {"x": {"choice": [0.1, 0.3, 0.9]}, "n": {"grid": [2, 3]}} if algorithm == "grid" else None
    summary = custom_sweep(tmp_path, storage, f"searcher-{algorithm}-{'-'.join(options.values())}",
                           algorithm=algorithm, scheduler="fifo", num_trials=5, **options,
                           **({"space": space} if space else {}))
    trials = summary["trials"]
    assert len(trials) == (6 if algorithm == "grid" else 5)
    assert all(t["state"] == "completed" and t["iterations"] == 12 for t in trials)
    for t in trials:
        x, n = t["config"]["x"], t["config"]["n"]
        assert 0.0 <= x <= 1.0 and isinstance(n, int) and 1 <= n <= 5
        assert t["value"] == pytest.approx((x - 0.3) ** 2 + (n - 3) ** 2 / 10 + 1 / 12)


@pytest.mark.parametrize("scheduler", ["fifo", "asha", "rung-asha", "hyperband", "median", "pbt", "pb2"])
def test_every_scheduler_runs_a_real_sweep(ray_local, tmp_path, storage, scheduler):
    extra: dict = {"perturbation_interval": 3} if scheduler in ("pbt", "pb2") else {}
    if scheduler == "hyperband":
        extra["max_concurrent"] = None  # paused trials count against it: the bracket (9 trials) must fill
    space = {"x": {"uniform": [0.0, 1.0]}} if scheduler == "pb2" else None
    summary = custom_sweep(tmp_path, storage, f"scheduler-{scheduler}", algorithm="random", scheduler=scheduler,
                           num_trials=8, grace_period=1, **extra, **({"space": space} if space else {}))
    trials = summary["trials"]
    assert len(trials) == 8 and all(t["status"] == "TERMINATED" for t in trials)
    iterations = [t["iterations"] for t in trials]
    if scheduler in ("asha", "rung-asha", "hyperband", "median"):
        assert min(iterations) < 12 <= max(iterations), iterations  # stopped some early, ran the best through
        assert summary["compute"]["iterations"] < 8 * 12
    else:
        assert all(i == 12 for i in iterations)
    if scheduler in ("pbt", "pb2"):
        exploits = (storage / f"scheduler-{scheduler}" / "pbt_global.txt").read_text().splitlines()
        assert exploits, "no exploit happened"


def llm_population_sweep(tiny_raw, scheduler: str, read: Callable[[str], str], **over: Any) -> tuple[dict, list[list]]:
    # Synchronous PBT: both trials wait at each perturbation (every 10 steps) for each other, so at the first one the
    # worse (lr 1e-4, which learns almost nothing in 40 steps) exploits the better (2e-2), whatever order they report
    # in. (Asynchronous, it exploits only if the better one was in the upper quantile at a perturbation of its own
    # while the worse one had a score: an exploit then depends on how the trials' reports interleave.)
    max_steps, eval_every = 40, 5
    raw = tiny_raw(train={"max_steps": max_steps, "eval_every": eval_every, "warmup_steps": 0, "min_lr_ratio": 1.0},
                   search={"scheduler": scheduler, "algorithm": "random", "num_trials": 2, "max_concurrent": 2,
                           "quantile_fraction": 0.5, "synch": True,
                           "space": {"train.lr": {"loguniform": [1.0e-4, 3.0e-2]}},
                           "points_to_evaluate": [{"train.lr": 1.0e-4}, {"train.lr": 2.0e-2}]},
                   resources={"cpus_per_worker": 0.5}, **over)
    spec = validate(raw)
    result = run_sweep(spec)
    exploits = [json.loads(line) for line in read(f"{spec.location}/pbt_global.txt").splitlines()]
    # The sweep store holds the same lineage, for the dashboard: each exploit's trial, donor and new values.
    engine = store.open_store(None, result.path.parent)
    stored = [(t["trial_id"], e["donor"], e["config"]["train.lr"])
              for t in store.sweep_detail(engine, spec.name)["leaderboard"] for e in t["exploits"]]
    engine.dispose()
    tags = {t["trial_id"].rsplit("_", 1)[-1].lstrip("0") or "0": t["trial_id"] for t in result.summary["trials"]}
    expected = [(tags[target.split("_")[0]], tags[donor.split("_")[0]], new["train"]["lr"])
                for target, donor, _ti, _di, _old, new in exploits]
    assert sorted(stored) == sorted(expected)
    return result.summary, exploits


def rows_of(summary: dict, index: int, read: Callable[[str], str]) -> list[dict]:
    trial = next(t for t in summary["trials"] if t["trial_id"].endswith(f"_{index:05d}"))
    return [json.loads(line) for line in read(f"{trial['path']}/result.json").splitlines()]


@pytest.mark.slow
def test_population_training_exploits_on_the_llm_trial(ray_local, tiny_raw):
    """PB2 clones a donor's checkpoint into the exploiting trial (test_sharded's PBT test does it in a bucket)."""

    def read(path: str) -> str:
        return Path(path).read_text()

    summary, exploits = llm_population_sweep(tiny_raw, "pb2", read)
    assert exploits, "no exploit happened"
    steps_per_report = 5
    for target_tag, donor_tag, _target_iter, _donor_iter, _old, new_config in exploits:
        rows = rows_of(summary, int(target_tag.split("_")[0]), read)
        donor = int(donor_tag.split("_")[0])
        donor_rows = rows_of(summary, donor, read)
        new_lr = new_config["train"]["lr"]
        from_donor = f"_{donor:05d}"
        after = [r for r in rows if r["config"]["train"]["lr"] == new_lr and r["resumed_from"].endswith(from_donor)]
        assert after, f"the exploiting trial never trained from the donor's checkpoint with its new lr {new_lr}"
        first = after[0]
        # It resumed from a checkpoint the donor wrote (at the donor's last perturbation, at or before the exploit),
        # and trained on from that step.
        assert first["resumed_at_step"] in {r["step"] for r in donor_rows}
        # (synchronous PBT pauses and resumes trials, so Tune's iteration count no longer maps to steps: by step)
        assert 0 < first["resumed_at_step"] < 40
        assert first["step"] == first["resumed_at_step"] + steps_per_report
        # Its optimizer ran at the new config's lr (constant schedule here: warmup 0, min_lr_ratio 1).
        assert math.isclose(first["lr"], new_lr, rel_tol=1e-12)
    # Every trial reported every eval point of its own history to the end, none lost when it paused or restarted: each
    # report is one interval past the previous one, or past the checkpoint it resumed from.
    for t in summary["trials"]:
        history = rows_of(summary, int(t["trial_id"].rsplit("_", 1)[1]), read)
        assert history[-1]["step"] == 40
        for prev, row in zip(history, history[1:], strict=False):
            since = prev["step"] if row["resumed_at_step"] == prev["resumed_at_step"] else row["resumed_at_step"]
            assert row["step"] == since + steps_per_report, (prev, row)
