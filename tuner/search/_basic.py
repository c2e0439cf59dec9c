"""grid and random: Ray Tune's BasicVariantGenerator, seeded."""

from __future__ import annotations

from typing import Any

from ray.tune.search import BasicVariantGenerator

from tuner.search import initial_points


def grid(spec: Any) -> BasicVariantGenerator:
    return BasicVariantGenerator(random_state=spec.search.seed, max_concurrent=spec.search.max_concurrent or 0)


def random(spec: Any) -> BasicVariantGenerator:
    return BasicVariantGenerator(points_to_evaluate=initial_points(spec) or None, random_state=spec.search.seed,
                                 max_concurrent=spec.search.max_concurrent or 0)
