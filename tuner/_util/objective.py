"""The sweep's objective, a metric and a mode: the one place that knows whether lower or higher is better.

Every comparison of results goes through it (the summary's best, leaderboards, the progress line, the store, the
checkpoint policy, searchers that maximize). A missing or non-finite value (a diverged loss) is never better than
a finite one, and ranks last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
MODES = ("min", "max")


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Objective:
    metric: str
    mode: str = "min"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be min or max, got {self.mode!r}")

    def loss(self, value: float) -> float:
        """The value as a loss: smaller is better."""
        return value if self.mode == "min" else -value

    def gain(self, value: float) -> float:
        """The value as a gain: larger is better (for maximizing optimizers)."""
        return -self.loss(value)

    def key(self, value: Any) -> tuple[bool, float]:
        """Sort key, best first; missing and non-finite values last."""
        return (False, self.loss(float(value))) if finite(value) else (True, 0.0)

    def better(self, new: Any, old: Any) -> bool:
        """``new`` is strictly better than ``old`` (anything finite beats a missing or non-finite ``old``)."""
        return finite(new) and (not finite(old) or self.loss(float(new)) < self.loss(float(old)))

    def ranked(self, items: Iterable[T], value: Callable[[T], Any] = lambda x: x,
               full: Callable[[T], bool] | None = None) -> list[T]:
        """Best first (stable: ties keep their order); items without a finite value last. With ``full`` (whether an
        item's value is at full fidelity), full-fidelity values rank before the others: a value from a trial cut
        short never beats one from a trial that ran its whole length."""

        def key(item: T) -> tuple[bool, bool, float]:
            missing, loss = self.key(value(item))
            return missing, full is not None and not full(item), loss

        return sorted(items, key=key)

    def best(self, items: Iterable[T], value: Callable[[T], Any] = lambda x: x,
             full: Callable[[T], bool] | None = None) -> T | None:
        """The best item with a finite value (the first of a tie; full-fidelity ones first, as ``ranked``), or None."""
        ranked = [item for item in self.ranked(items, value, full) if finite(value(item))]
        return ranked[0] if ranked else None
