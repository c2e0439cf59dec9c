"""tpe: HyperOpt's Tree-structured Parzen Estimator through Ray Tune's HyperOptSearch, seeded.

Imported only when a sweep uses tpe (the registry loads it lazily), so it may import Ray and hyperopt at the top.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.hyperopt import HyperOptSearch
from ray.tune.utils import flatten_dict

from tuner.search import FiniteResults, initial_points


class NestedPointsHyperOptSearch(FiniteResults, HyperOptSearch):
    """HyperOptSearch whose points to evaluate may be nested (the LLM trial's ``{"train": {"lr": ...}}``), and that
    learns nothing from a NaN or infinite result (FiniteResults).

    Ray's class hands nested points to hyperopt as they are, while hyperopt labels nested parameters ``train/lr``:
    once TPE learns from such a trial it fails (KeyError 'train/lr'). Here the points are flattened after Ray maps
    their categories to indices."""

    def _setup_hyperopt(self) -> None:
        points = self._points_to_evaluate
        if not points:
            return super()._setup_hyperopt()
        from hyperopt.fmin import generate_trials_to_calculate

        self._points_to_evaluate = None
        super()._setup_hyperopt()
        flat = []
        for point in points:
            self._convert_categories_to_indices(point)
            flat.append(flatten_dict(point))
        self._hpopt_trials = generate_trials_to_calculate(list(reversed(flat)))  # LIFO: reversed is FIFO
        self._hpopt_trials.refresh()
        self._points_to_evaluate = len(flat)  # type: ignore[assignment]  # Ray keeps the count here


def tpe(spec: Any) -> Any:
    s = spec.search
    # Like Optuna's TPESampler (10 startup trials), but a third of small sweeps so TPE gets to steer them.
    startup = min(10, max(2, s.num_trials // 3))
    return NestedPointsHyperOptSearch(points_to_evaluate=initial_points(spec) or None, n_initial_points=startup,
                                      random_state_seed=s.seed)
