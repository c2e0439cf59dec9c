"""The search space of a Ray Tune param space, encoded in a unit cube for the mftpe searcher's model. No Ray calls
here beyond reading its domain objects.

Numbers live on [0, 1]: floats and integer ranges linearly or on a log scale as their domain says (quantized and
integer values are snapped back to their grid when decoded); numeric choices (batch sizes, layer counts) and small
integer ranges are ordinal grids, at evenly spaced positions in their sorted order, so that 16 lies between 8 and 32.
Other choices are categories (their index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_GRID = 64  # a numeric dimension with at most this many values is treated as discrete (masses on its grid)


@dataclass(frozen=True)
class Param:
    path: tuple[Any, ...]
    kind: str  # "numeric" or "category"
    lo: float = 0.0  # numeric: the range in the (log-)transformed scale
    hi: float = 1.0
    log: bool = False
    grid: tuple[Any, ...] = ()  # numeric: every value, ascending, when there are at most MAX_GRID; category: values
    integer: bool = False
    q: float | None = None

    @property
    def discrete(self) -> bool:
        return bool(self.grid)

    def positions(self) -> np.ndarray:
        """Every encoded value of a discrete dimension (as ``encode`` gives them)."""
        n = len(self.grid)
        if self.kind == "category":
            return np.arange(n, dtype=float)
        return np.arange(n) / (n - 1) if n > 1 else np.array([0.5])

    def encode(self, value: Any) -> float:
        if self.kind == "category":
            return float(self.grid.index(value))
        if self.discrete:
            i = int(np.argmin([abs(float(g) - float(value)) for g in self.grid]))
            return i / (len(self.grid) - 1) if len(self.grid) > 1 else 0.5
        x = math.log(value) if self.log else float(value)
        return float(np.clip((x - self.lo) / (self.hi - self.lo), 0.0, 1.0)) if self.hi > self.lo else 0.5

    def decode(self, u: float) -> Any:
        if self.kind == "category":
            return self.grid[int(u)]
        if self.discrete:
            return self.grid[int(round(u * (len(self.grid) - 1)))]
        x = self.lo + u * (self.hi - self.lo)
        x = math.exp(x) if self.log else x
        lo, hi = (math.exp(self.lo), math.exp(self.hi)) if self.log else (self.lo, self.hi)
        if self.q:
            x = min(max(round(x / self.q) * self.q, math.ceil(lo / self.q - 1e-9) * self.q),
                    math.floor(hi / self.q + 1e-9) * self.q)
        if self.integer:
            return int(min(max(round(x), math.ceil(lo)), math.floor(hi)))
        return float(min(max(x, lo), hi))


def param_of(path: tuple[Any, ...], domain: Any) -> Param:
    """The Param of a Ray Tune domain (tune.uniform, loguniform, q*, randint, lograndint, choice)."""
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Quantized

    if isinstance(domain, Categorical):
        values = list(domain.categories)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) > 1:
            return Param(path, "numeric", grid=tuple(sorted(set(values))))
        return Param(path, "category", grid=tuple(values))
    sampler = domain.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    log = isinstance(sampler.get_sampler() if isinstance(sampler, Quantized) else sampler, LogUniform)
    if isinstance(domain, Integer):
        lo, hi = domain.lower, domain.upper if q and q > 1 else domain.upper - 1  # Ray's bounds, as it samples
        if q and q > 1:
            lo, hi = math.ceil(lo / q) * q, math.floor(hi / q) * q
        step = int(q or 1)
        if (hi - lo) // step + 1 <= MAX_GRID:
            return Param(path, "numeric", grid=tuple(range(int(lo), int(hi) + 1, step)), integer=True)
        return _range(path, lo, hi, log, q, integer=True)
    if isinstance(domain, Float):
        if q:
            lo, hi = math.ceil(domain.lower / q - 1e-9) * q, math.floor(domain.upper / q + 1e-9) * q
            if round((hi - lo) / q) + 1 <= MAX_GRID and not log:
                return Param(path, "numeric", grid=tuple(lo + i * q for i in range(round((hi - lo) / q) + 1)), q=q)
        return _range(path, domain.lower, domain.upper, log, q, integer=False)
    raise ValueError(f"mftpe cannot search the domain {domain!r} at {'/'.join(map(str, path))}")


def _range(path: tuple[Any, ...], lo: float, hi: float, log: bool, q: float | None, *, integer: bool) -> Param:
    if log:
        return Param(path, "numeric", math.log(lo), math.log(hi), True, q=q, integer=integer)
    return Param(path, "numeric", float(lo), float(hi), False, q=q, integer=integer)


def uniform(params: list[Param], rng: np.random.Generator) -> np.ndarray:
    """One point drawn uniformly from the space (encoded)."""
    out = np.empty(len(params))
    for j, p in enumerate(params):
        if p.kind == "category":
            out[j] = rng.integers(0, len(p.grid))
        elif p.discrete and len(p.grid) > 1:
            out[j] = rng.integers(0, len(p.grid)) / (len(p.grid) - 1)
        elif p.discrete:
            out[j] = 0.5
        else:
            out[j] = rng.random()
    return out
