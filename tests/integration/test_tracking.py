"""The spec's ``tracking`` through Ray's logger callbacks, offline: W&B in offline mode (conftest sets WANDB_MODE and
WANDB_DIR before Ray starts) and MLflow on a local SQLite store each get one run per trial with the sweep's metric."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import wait_until

from tuner.spec import validate
from tuner.sweep.driver import run_sweep

pytestmark = pytest.mark.integration

OBJECTIVE = '''
from ray import tune


def train(config):
    for i in range(1, 4):
        tune.report({"val_loss": config["x"] + 1 / i})
'''


def sweep(tmp_path: Path, name: str, tracking: dict) -> dict:
    (tmp_path / "tracked.py").write_text(OBJECTIVE)
    spec = validate({"name": name, "storage": str(tmp_path / "sweeps"), "trainable": "tracked:train",
                     "tracking": tracking,
                     "search": {"metric": "val_loss", "mode": "min", "algorithm": "grid", "scheduler": "fifo",
                                "max_concurrent": 2, "space": {"x": {"grid": [0.2, 0.8]}}}}, spec_dir=str(tmp_path))
    return run_sweep(spec).summary


def test_wandb_and_mlflow_get_one_run_per_trial_with_the_metric(ray_local, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = sweep(tmp_path, "tracked", {"mlflow": {"tracking_uri": uri, "experiment": "tuned"},
                                          "wandb": {"project": "tuned"}})
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tuned").experiment_id])
    assert len(runs) == len(summary["trials"]) == 2
    offline = {r.name.rsplit("-", 1)[1]: r for r in (Path(os.environ["WANDB_DIR"]) / "wandb").glob("offline-run-*")}
    for t in summary["trials"]:
        run = next(r for r in runs if t["trial_id"] in r.data.tags.get("trial_name", ""))
        assert run.data.metrics["val_loss"] == pytest.approx(t["last_result"]["val_loss"])
        assert run.data.tags["tuner.sweep"] == "tracked"
        # W&B: one offline run per trial (named by its id), its record log holding the metric. W&B's own service
        # process writes that log, and may still be flushing it when the sweep (and Ray's logging actor) has ended.
        log = next(offline[t["trial_id"]].glob("run-*.wandb"))
        wait_until(lambda log=log: b"val_loss" in log.read_bytes() or None, f"val_loss in {log.name}", timeout=60,
                   every=0.2)
