"""Rungs: the fidelities at which multi-fidelity search judges trials, and what a sweep's own trials say of them.

A full trial is ``max_t`` (in ``time_attr`` units). The rungs are geometric, ``max_t / eta**k`` for k = 3, 2, 1, 0
(about 1/27, 1/9, 1/3 and 1 of a full trial at the default eta of 3), none before ``min_t`` (the end of the LR
warmup: a loss measured while the learning rate still ramps up says little). A trial's value at a rung is what it
reported first at or past that fidelity.

Both the searcher (which rung to model on) and the scheduler (where to cut) keep their own ``RungRecords``, fed by
the results Ray Tune gives each of them, and ask it the same question: does a rung's ranking predict a higher
rung's? A rung whose ranking does not is neither modelled on nor cut at.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

RUNGS = 4  # over a full trial, the last one being the full trial
# A rung's ranking is judged once this many trials have values at it and at a higher rung (rank correlation of
# fewer pairs is mostly noise: its standard error is about 1/sqrt(n - 1)).
MIN_PAIRS = 6
# Below this Spearman correlation with a higher rung, a rung's ranking does not predict it: Cohen's "medium"
# effect size. Cutting on such a ranking stops good trials about as often as bad ones.
MIN_RANK_CORRELATION = 0.3


# The hedge pool: trials the mftpe searcher proposed uniformly at random while it modelled on full-length results.
# rung-asha judges each of them against the other hedge trials only (below its last cut), so that a model drawn to
# configs that start fast cannot crowd out, at a low rung, the random configs that lead only late (short-horizon
# bias). Trial ids are unique per process (Ray's), and the searcher and scheduler of a sweep both live in its driver,
# so one registry serves; the searcher keeps its own copy and registers it again when restored.
HEDGE_TRIALS: set[str] = set()


def rung_levels(max_t: float, eta: float, *, min_t: float = 0.0, grace: float | None = None,
                count: int = RUNGS) -> tuple[float, ...]:
    """The rung milestones, ascending and ending at ``max_t``. With ``grace`` (an explicit first rung) they are
    ``grace * eta**k`` below ``max_t``; otherwise ``max_t / eta**k`` for k < ``count``, none before ``min_t``."""
    if grace is not None:
        levels, level = [], float(grace)
        while level < max_t * (1 - 1e-9):
            levels.append(level)
            level *= eta
        return (*levels, float(max_t))
    levels = [max_t / eta ** k for k in range(count - 1, 0, -1)]
    return (*[lvl for lvl in levels if lvl >= min_t], float(max_t))


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long samples (ties get their average rank)."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):  # ties: the average of their ranks
        tied = x == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


class RungRecords:
    """Each trial's loss (smaller is better) at each rung it reached."""

    def __init__(self, levels: tuple[float, ...]):
        self.levels = tuple(levels)
        self.values: list[dict[str, float]] = [{} for _ in self.levels]

    @property
    def top(self) -> int:
        return len(self.levels) - 1

    def record(self, trial_id: str, t: float, loss: float) -> list[int]:
        """A report at fidelity ``t``: its loss becomes the trial's value at every rung it reached first now.
        Returns those rungs. Non-finite losses are not recorded."""
        if not (isinstance(loss, (int, float)) and math.isfinite(loss)):
            return []
        new = [k for k, level in enumerate(self.levels)
               if t >= level * (1 - 1e-9) and trial_id not in self.values[k]]
        for k in new:
            self.values[k][trial_id] = float(loss)
        return new

    def record_final(self, trial_id: str, loss: float) -> None:
        """A trial that ended on its own, wherever that was: its last loss is its value at the top rung (a full
        trial), and it has no value at the rungs it never reached."""
        if isinstance(loss, (int, float)) and math.isfinite(loss):
            self.values[self.top].setdefault(trial_id, float(loss))

    def rung_reached(self, trial_id: str) -> int:
        """The highest rung the trial has a value at (-1: none)."""
        return max((k for k, vals in enumerate(self.values) if trial_id in vals), default=-1)

    def forget(self, trial_id: str) -> None:
        for vals in self.values:
            vals.pop(trial_id, None)

    def correlation(self, k: int) -> tuple[float, int, int] | None:
        """The rank correlation of rung ``k``'s values with the highest rung above it that has at least
        MIN_PAIRS trials in common with it (the full trial's ranking is the one that matters; the next rung's is
        the one measured first): (rho, pairs, that rung); None while no rung above has enough."""
        for j in range(self.top, k, -1):
            common = [t for t in self.values[j] if t in self.values[k]]
            if len(common) >= MIN_PAIRS:
                rho = spearman([self.values[k][t] for t in common], [self.values[j][t] for t in common])
                return rho, len(common), j
        return None

    def reliable(self, k: int) -> bool:
        """Whether rung ``k``'s ranking may be trusted: the top rung always; a lower one until the sweep's own
        trials show its ranking does not predict a higher rung's."""
        if k >= self.top:
            return True
        measured = self.correlation(k)
        return measured is None or measured[0] >= MIN_RANK_CORRELATION

    def state(self) -> dict[str, Any]:
        return {"levels": self.levels, "values": self.values}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RungRecords:
        records = cls(tuple(state["levels"]))
        records.values = [dict(v) for v in state["values"]]
        return records
