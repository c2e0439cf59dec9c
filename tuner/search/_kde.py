"""BOHB's kernel density estimate (Falkner et al. 2018), the density model of the mftpe searcher, over the unit cube
of ``tuner.search._space``.

A mixture of one product kernel per observation, equally weighted: per numeric dimension a Gaussian truncated to
[0, 1] whose bandwidth follows the data (the normal-reference rule, 1.06 std n^(-1/(d+4))), at least 1 / min(100,
n + 1) of the range (Optuna's clip: kernels of repeated or clustered points do not collapse onto them, which froze the
search on a handful of configs) and half a grid step on an ordinal grid, where it gives masses to the grid's cells;
for categories a kernel that puts most of its mass on the observation's own category. Sampling a kernel and then each
of its dimensions keeps the dimensions' dependence: the model is multivariate, not one density per hyperparameter.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

from tuner.search._space import Param

MIN_BANDWIDTH = 1e-3  # BOHB's
CATEGORY_KERNEL_MASS = 0.8  # the share of a category kernel's mass on the observation's own category


class Parzen:
    """The density of ``points`` (n x d, encoded)."""

    def __init__(self, params: list[Param], points: np.ndarray):
        self.params = params
        n, d = points.shape
        self.means = [points[:, j] for j in range(d)]
        scale = 1.06 * max(n, 1) ** (-1.0 / (d + 4))  # the normal-reference rule (Scott's, for d dimensions)
        self.sigma: list[float] = []
        for j, p in enumerate(params):
            floor = max(MIN_BANDWIDTH, 1.0 / min(100, n + 1))  # Optuna's "magic clip": no collapse onto a point
            if p.discrete and p.kind == "numeric" and len(p.grid) > 1:
                floor = 0.5 / (len(p.grid) - 1)  # at least half a grid step
            spread = float(points[:, j].std()) if n > 1 else 0.5
            self.sigma.append(min(max(scale * spread, floor), 1.0))

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        """Log density (log mass on discrete dimensions) of each row of ``x`` (m x d)."""
        total = np.zeros((x.shape[0], len(self.means[0])))
        for j, p in enumerate(self.params):
            total += self._log_kernel(j, p, x[:, j])
        return logsumexp(total, axis=1) - math.log(max(total.shape[1], 1))

    def _log_kernel(self, j: int, p: Param, x: np.ndarray) -> np.ndarray:
        mu, sigma, x = self.means[j][None, :], self.sigma[j], x[:, None]
        if p.kind == "category":
            k = len(p.grid)
            return np.log(np.where(x == mu, CATEGORY_KERNEL_MASS + (1 - CATEGORY_KERNEL_MASS) / k,
                                   (1 - CATEGORY_KERNEL_MASS) / k))
        inside = ndtr((1 - mu) / sigma) - ndtr(-mu / sigma)  # the truncation to [0, 1]
        if p.discrete:
            half = 0.5 / (len(p.grid) - 1) if len(p.grid) > 1 else 0.5
            lo, hi = np.clip(x - half, 0, 1), np.clip(x + half, 0, 1)
            mass = ndtr((hi - mu) / sigma) - ndtr((lo - mu) / sigma)
            return np.log(np.maximum(mass / inside, 1e-300))
        z = (x - mu) / sigma
        return -0.5 * z ** 2 - np.log(sigma * math.sqrt(2 * math.pi) * inside)

    def sample(self, rng: np.random.Generator, count: int, widen: float = 1.0) -> np.ndarray:
        """``count`` points, each from one kernel (its bandwidths times ``widen``) in all its dimensions."""
        comp = rng.integers(0, len(self.means[0]), size=count)
        out = np.empty((count, len(self.params)))
        for j, p in enumerate(self.params):
            mu = self.means[j][comp]
            if p.kind == "category":
                own = rng.random(count) < CATEGORY_KERNEL_MASS
                out[:, j] = np.where(own, mu, rng.integers(0, len(p.grid), size=count))
                continue
            sigma = min(self.sigma[j] * widen, 1.0)
            lo, hi = ndtr(-mu / sigma), ndtr((1 - mu) / sigma)  # inverse-CDF sampling of the truncated normal
            u = lo + rng.random(count) * (hi - lo)
            v = np.clip(mu + sigma * ndtri(np.clip(u, 1e-12, 1 - 1e-12)), 0.0, 1.0)
            if p.discrete and len(p.grid) > 1:
                v = np.round(v * (len(p.grid) - 1)) / (len(p.grid) - 1)
            out[:, j] = v
        return out

