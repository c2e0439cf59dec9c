"""The spec's ``tracking``: Ray's own logger callbacks for Weights & Biases and MLflow, one run per trial.

Credentials stay where the trackers read them (WANDB_API_KEY or `wandb login`; MLflow's environment), never in the
spec. Each logs every reported result with the trial's config; checkpoints are not uploaded (they live in the sweep's
storage)."""

from __future__ import annotations

from typing import Any

from tuner.spec import Spec


def tracking_callbacks(spec: Spec) -> list[Any]:
    out: list[Any] = []
    wandb, mlflow = spec.tracking.wandb, spec.tracking.mlflow
    if wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        extra: dict[str, Any] = {"entity": wandb.entity} if wandb.entity else {}
        out.append(WandbLoggerCallback(project=wandb.project, group=wandb.group or spec.name, log_config=True,
                                       **extra))
    if mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        out.append(MLflowLoggerCallback(tracking_uri=mlflow.tracking_uri, tags={"tuner.sweep": spec.name},
                                        experiment_name=mlflow.experiment or spec.name))
    return out
