"""Benchmark objectives: a closed-form multi-fidelity Hartmann-6 and its Ray Tune trainable (bench/search.py's
real-Ray check).

The multi-fidelity Hartmann-6 is the one of Kandasamy et al. (2017, "Multi-fidelity Bayesian optimisation with
continuous approximations"), as mf-prior-bench's ``mfh6`` uses it: the weights of the four Gaussian bumps shift with
the fidelity, so low-fidelity values are biased and even rank configurations differently. mf-prior-bench itself pins
numpy<2, which breaks pyarrow and with it ray.train, so it stays out of this environment.
"""

from __future__ import annotations

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


def train_hartmann(config: dict) -> None:
    """A Ray Tune function trainable: Hartmann-6 at fidelity steps i = 1..27 (z = i / 27), a report at every step,
    as bench/tasks.py's mfh6 task reports (``time_attr: t``; ``cost`` is the steps since the last report). A step
    takes 20 ms, so trials running at once progress at the same pace, as training does and the simulator assumes
    (an instant trainable runs all its reports before the next trial has started, and is never judged against it)."""
    import time

    from ray import tune

    x = np.array([config[k] for k in KEYS])
    for i in range(1, 28):
        time.sleep(0.02)
        tune.report({"loss": mf_hartmann6(x, i / 27), "t": i, "cost": 1})
