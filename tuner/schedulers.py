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
    "pbt": "tuner.schedulers:pbt",
    "pb2": "tuner.schedulers:pb2",
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
    """HyperBand sizes its brackets from max_t: in tokens (~1e6) it would build a dozen brackets whose first runs
    every trial to the end. The LLM trial reports at equal token intervals, so its reports are the same fidelity
    in units HyperBand can bracket."""
    from ray.tune.schedulers import HyperBandScheduler

    time_attr = budget.time_attr if spec.is_custom else "training_iteration"
    return HyperBandScheduler(time_attr=time_attr, max_t=hyperband_max_t(spec, budget),  # type: ignore[arg-type]
                              reduction_factor=spec.search.reduction_factor)


def hyperband_max_t(spec: Any, budget: Budget) -> float:
    return budget.max_t if spec.is_custom else max(1, round(budget.max_t / budget.eval_interval))


def median(spec: Any, budget: Budget) -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=budget.time_attr,      grace_period=budget.grace_period, min_samples_required=3)


# --- population based training --------------------------------------------------------------------------------

def perturbation_interval(spec: Any, budget: Budget) -> float:
    """Default: every second report, so a trial has a checkpoint of the score it is judged by."""
    return spec.search.perturbation_interval or 2 * budget.eval_interval


class ClipToSpace:
    """PBT perturbs by x0.8 / x1.2 without bounds; keep every mutated value inside its search-space range (a
    dropout of 1.1 would fail the trial's spec)."""

    def __init__(self, bounds: dict[str, tuple[float, float]], nested: bool):
        self.bounds, self.nested = bounds, nested

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, (lo, hi) in self.bounds.items():
            if self.nested:
                *parents, leaf = key.split(".")
                node = config
                for p in parents:
                    node = node[p]
            else:
                node, leaf = config, key
            value = min(max(node[leaf], lo), hi)
            node[leaf] = type(node[leaf])(value)
        return config


def _ranges(spec: Any) -> dict[str, tuple[float, float]]:
    return {k: (min(d.candidates()), max(d.candidates())) for k, d in spec.dimensions().items() if not d.is_discrete}


def _sharded(spec: Any) -> bool:
    return spec.resources.workers_per_trial > 1


def pbt(spec: Any, budget: Budget) -> Any:
    from tuner._pbt import CheckpointedPBT

    s = spec.search
    domains = spec.tune_domains()
    mutations = {k: list(d.args) if d.is_discrete else domains[k] for k, d in spec.dimensions().items()}
    return CheckpointedPBT(
        time_attr=budget.time_attr, max_t=budget.max_t, perturbation_interval=perturbation_interval(spec, budget),
        hyperparam_mutations=spec.nest(mutations), quantile_fraction=s.quantile_fraction,
        resample_probability=s.resample_probability, yield_to_waiting=not _sharded(spec),
        custom_explore_fn=ClipToSpace(_ranges(spec), nested=not spec.is_custom))


def pb2(spec: Any, budget: Budget) -> Any:
    from tuner._pbt import CheckpointedPB2

    bounds = {k: list(r) for k, r in _ranges(spec).items()}
    return CheckpointedPB2(
        time_attr=budget.time_attr, max_t=budget.max_t, perturbation_interval=perturbation_interval(spec, budget),
        hyperparam_bounds=spec.nest(bounds), quantile_fraction=spec.search.quantile_fraction,
        yield_to_waiting=not _sharded(spec), custom_explore_fn=ClipToSpace(_ranges(spec), nested=not spec.is_custom))
