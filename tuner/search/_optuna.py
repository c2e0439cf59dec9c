"""optuna: Optuna's samplers through Ray Tune's OptunaSearch (TPE by default; gp, cmaes and random on request).

Imported only when a sweep uses optuna (the registry loads it lazily), so it may import Ray and Optuna at the top."""

from __future__ import annotations

from typing import Any

import optuna as ot
from ray.tune.search.optuna import OptunaSearch
from ray.tune.utils import flatten_dict

from tuner.search import FiniteResults, initial_points


class FiniteOptunaSearch(FiniteResults, OptunaSearch):
    """Ray's OptunaSearch, learning nothing from a NaN or infinite result (FiniteResults)."""


def optuna(spec: Any) -> Any:
    s = spec.search
    seed = s.seed
    startup = min(10, max(2, s.num_trials // 3))
    samplers = {
        "tpe": lambda: ot.samplers.TPESampler(seed=seed, n_startup_trials=startup),
        "gp": lambda: ot.samplers.GPSampler(seed=seed, n_startup_trials=startup),
        "cmaes": lambda: ot.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup),
        "random": lambda: ot.samplers.RandomSampler(seed=seed),
    }
    # OptunaSearch names nested parameters "train/lr" and wants the points to evaluate flat in the same way.
    points = [flatten_dict(p) for p in initial_points(spec)]
    return FiniteOptunaSearch(sampler=samplers[s.sampler or "tpe"](), points_to_evaluate=points or None)
