"""Searchers by name. Each factory takes the Spec and returns a Ray Tune search algorithm; imports are lazy."""

from __future__ import annotations

from typing import Any

from tuner.registry import Registry

SEARCHERS = Registry("search algorithm", {
    "grid": "tuner.search._basic:grid",
    "random": "tuner.search._basic:random",
    "tpe": "tuner.search._hyperopt:tpe",
})


def make_searcher(spec: Any) -> Any:
    return SEARCHERS.get(spec.search.algorithm)(spec)


def initial_points(spec: Any) -> list[dict[str, Any]]:
    """``search.points_to_evaluate`` shaped like the param space (nested for the LLM trial's dotted keys)."""
    from tuner.space import set_path

    if spec.is_custom:
        return [dict(p) for p in spec.search.points_to_evaluate]
    out = []
    for point in spec.search.points_to_evaluate:
        nested: dict[str, Any] = {}
        for key, value in point.items():
            set_path(nested, key, value)
        out.append(nested)
    return out
