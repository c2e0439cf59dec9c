"""Trial schedulers by name. Each factory takes the Spec and its Budget and returns a Ray Tune TrialScheduler.

metric and mode reach schedulers and searchers through TuneConfig (Ray refuses them in both places)."""

from __future__ import annotations

from typing import Any

from tuner.budget import Budget
from tuner.registry import Registry

SCHEDULERS = Registry("scheduler", {
    "fifo": "tuner.schedulers:fifo",
    "asha": "tuner.schedulers:asha",
    "hyperband": "tuner.schedulers:hyperband",
    "median": "tuner.schedulers:median",
})


def make_scheduler(spec: Any, budget: Budget) -> Any:
    return SCHEDULERS.get(spec.search.scheduler)(spec, budget)


def fifo(spec: Any, budget: Budget) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def asha(spec: Any, budget: Budget) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    # Ray's hints say int; budgets in tokens may be fractional and the schedulers compare them as numbers.
    return ASHAScheduler(time_attr=budget.time_attr, max_t=budget.max_t,  # type: ignore[arg-type]
                         grace_period=budget.grace_period,  # type: ignore[arg-type]
                         reduction_factor=spec.search.reduction_factor)


def hyperband(spec: Any, budget: Budget) -> Any:
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr=budget.time_attr, max_t=budget.max_t,  # type: ignore[arg-type]
                              reduction_factor=spec.search.reduction_factor)


def median(spec: Any, budget: Budget) -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=budget.time_attr,      grace_period=budget.grace_period, min_samples_required=3)
