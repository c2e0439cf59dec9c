"""The spec's ``tracking`` through Ray's logger callbacks, offline: W&B in offline mode and MLflow on a local SQLite
store each get one run per trial with the sweep's metric."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from support import cli_env

from tuner.spec import validate
from tuner.sweep.driver import run_sweep

pytestmark = pytest.mark.integration


def test_mlflow_gets_one_run_per_trial_with_the_metric(ray_local, tiny_raw, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_sweep(validate(tiny_raw(tracking={"mlflow": {"tracking_uri": uri, "experiment": "tuned"}})))
    runs = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name("tuned")
                                                 .experiment_id])
    assert len(runs) == len(result.trials) == 2
    by_trial = {r.data.tags.get("trial_name"): r for r in runs}
    for t in result.trials:
        run = next(r for name, r in by_trial.items() if name and t["trial_id"] in name)
        assert run.data.metrics["val_loss"] == pytest.approx(t["last_result"]["val_loss"])
        assert run.data.tags["tuner.sweep"] == result.summary["name"]


def test_wandb_offline_leaves_one_run_per_trial_with_the_metric(tmp_path, corpus, tiny_raw):
    raw = tiny_raw(storage=str(tmp_path / "sweeps"), tracking={"wandb": {"project": "tuned"}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    env = cli_env(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true")
    done = subprocess.run([sys.executable, "-m", "tuner", "run", "spec.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2, runs
    # One run per trial (named by its trial id), its record log (wandb's protobuf records) holding the metric.
    assert sorted(r.name.rsplit("-", 1)[1] for r in runs) == sorted(
        d.name.removeprefix("trial_") for d in (tmp_path / "sweeps" / raw["name"]).glob("trial_*"))
    for run in runs:
        assert b"val_loss" in next(run.glob("run-*.wandb")).read_bytes()
