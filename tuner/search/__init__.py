"""Searchers by name. Each factory takes the Spec and returns a Ray Tune search algorithm; imports are lazy."""

from __future__ import annotations

import math
import numbers
from typing import Any

from tuner._util.registry import Registry

SEARCHERS = Registry("search algorithm", {
    "grid": "tuner.search._basic:variants",
    "random": "tuner.search._basic:variants",
    "tpe": "tuner.search._hyperopt:tpe",
    "mftpe": "tuner.search._mftpe:mftpe",
    "bayesopt": "tuner.search._bayesopt:bayesopt",
    "optuna": "tuner.search._optuna:optuna",
})


def make_searcher(spec: Any) -> Any:
    return SEARCHERS.get(spec.search.algorithm)(spec)


def initial_points(spec: Any) -> list[dict[str, Any]]:
    """``search.points_to_evaluate`` shaped like the param space (nested for the LLM trial's dotted keys)."""
    return [spec.nest(point) for point in spec.search.points_to_evaluate]


class FiniteResults:
    """Mixin for a Ray Tune Searcher: a trial whose metric is NaN or infinite (a custom objective that diverged)
    completes as failed, so the model neither learns from it nor takes it as the best (a non-finite value is never
    better than a finite one: tuner._util.objective). Ray's HyperOptSearch and OptunaSearch pass such values on, and
    an inf (-inf for mode min) becomes the study's best; bayesopt drops them itself."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        metric = getattr(self, "metric", None)  # the Searcher's
        value = (result or {}).get(metric) if metric else None
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)  # type: ignore[misc]
