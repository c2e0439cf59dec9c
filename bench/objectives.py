"""Benchmark objectives: a closed-form multi-fidelity Hartmann-6 and its Ray Tune trainable.

The multi-fidelity Hartmann-6 is the one of Kandasamy et al. (2017, "Multi-fidelity Bayesian optimisation with
continuous approximations"), as mf-prior-bench's ``mfh6`` uses it: the weights of the four Gaussian bumps shift with
the fidelity, so low-fidelity values are biased and even rank configurations differently. mf-prior-bench itself pins
numpy<2, which breaks pyarrow and with it ray.train, so it stays out of this environment.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
DELTA = np.array([0.1, -0.1, 0.1, -0.1])  # the fidelity bias: alpha(z) = alpha - delta * (1 - z)
A = np.array([[10, 3, 17, 3.5, 1.7, 8],
              [0.05, 10, 17, 0.1, 8, 14],
              [3, 3.5, 1.7, 10, 17, 8],
              [17, 8, 0.05, 10, 0.1, 14]])
P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                     [2329, 4135, 8307, 3736, 1004, 9991],
                     [2348, 1451, 3522, 2883, 3047, 6650],
                     [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN6_MIN = -3.32237
KEYS = ("x1", "x2", "x3", "x4", "x5", "x6")


def mf_hartmann6(x: np.ndarray, z: float) -> float:
    """Hartmann-6 at fidelity z in (0, 1]; z = 1 is the true function (minimum -3.32237)."""
    alpha = ALPHA - DELTA * (1.0 - z)
    return float(-np.sum(alpha * np.exp(-np.sum(A * (x - P) ** 2, axis=1))))


def hartmann_trainable(max_t: int, checkpoints: bool) -> Any:
    """A Ray Tune function trainable over fidelity steps i = 1..max_t (z = i / max_t). It reports only where a
    scheduler acts: i = 1 and every third step (ASHA/HyperBand rungs at 1, 3, 9, 27 with reduction factor 3; PBT
    perturbing every 3; the median rule comparing there). Each Tune result and checkpoint costs the driver real time
    on a small machine, so steps between are computed but not reported, and only the schedulers that pause or
    exploit (HyperBand, PBT) get checkpoints. The fidelity is the result key ``i`` (``time_attr: i``); ``cost`` is
    the steps computed since the last report (the compute a benchmark counts), ``true_loss`` the value at full
    fidelity."""

    def train(config: dict) -> None:
        from ray import tune

        x = np.array([config[k] for k in KEYS])
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["i"]
        last = start
        for i in range(start + 1, max_t + 1):
            loss = mf_hartmann6(x, i / max_t)
            if i != 1 and i % 3 and i != max_t:
                continue
            metrics = {"loss": loss, "true_loss": mf_hartmann6(x, 1.0), "i": i, "cost": i - last}
            last = i
            if not checkpoints:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "state.json"), "w") as f:
                    json.dump({"i": i}, f)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    return train


train_hartmann_9 = hartmann_trainable(9, checkpoints=False)
train_hartmann_27 = hartmann_trainable(27, checkpoints=False)
train_hartmann_9_checkpointed = hartmann_trainable(9, checkpoints=True)
train_hartmann_27_checkpointed = hartmann_trainable(27, checkpoints=True)

