"""tpe: HyperOpt's Tree-structured Parzen Estimator through Ray Tune's HyperOptSearch, seeded."""

from __future__ import annotations

from typing import Any

from tuner.search import initial_points


def tpe(spec: Any) -> Any:
    try:
        from ray.tune.search.hyperopt import HyperOptSearch
    except ImportError as e:  # pragma: no cover - hyperopt is a core dependency
        raise ImportError("algorithm tpe needs hyperopt: pip install hyperopt") from e
    s = spec.search
    # Like Optuna's TPESampler (10 startup trials), but a third of small sweeps so TPE gets to steer them.
    startup = min(10, max(2, s.num_trials // 3))
    return HyperOptSearch(points_to_evaluate=initial_points(spec) or None,
                          n_initial_points=startup, random_state_seed=s.seed)
