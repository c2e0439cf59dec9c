"""Searchers by name. Each factory takes the Spec and returns a Ray Tune search algorithm; imports are lazy."""

from __future__ import annotations

from typing import Any

from tuner._util.registry import Registry

SEARCHERS = Registry("search algorithm", {
    "grid": "tuner.search._basic:variants",
    "random": "tuner.search._basic:variants",
    "tpe": "tuner.search._hyperopt:tpe",
    "bayesopt": "tuner.search._bayesopt:bayesopt",
    "optuna": "tuner.search._optuna:optuna",
})


def make_searcher(spec: Any) -> Any:
    return SEARCHERS.get(spec.search.algorithm)(spec)


def initial_points(spec: Any) -> list[dict[str, Any]]:
    """``search.points_to_evaluate`` shaped like the param space (nested for the LLM trial's dotted keys)."""
    return [spec.nest(point) for point in spec.search.points_to_evaluate]
