"""grid and random: Ray Tune's BasicVariantGenerator, seeded. Grid dimensions are tune.grid_search in the param
space, so one generator serves both."""

from __future__ import annotations

from typing import Any

from ray.tune.search import BasicVariantGenerator

from tuner.search import initial_points


def variants(spec: Any) -> BasicVariantGenerator:
    # Tune applies max_concurrent_trials only to Searchers (through a ConcurrencyLimiter); this generator is no
    # Searcher, so it takes the limit itself.
    return BasicVariantGenerator(points_to_evaluate=initial_points(spec) or None, random_state=spec.search.seed,
                                 max_concurrent=spec.search.max_concurrent or 0)
