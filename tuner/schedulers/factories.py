"""One factory per scheduler name: each takes the Spec and its Fidelity and returns a Ray Tune TrialScheduler.

metric and mode reach schedulers and searchers through TuneConfig (Ray refuses them in both places)."""

from __future__ import annotations

from typing import Any

from tuner._util import tree
from tuner.spec import Spec
from tuner.spec.fidelity import Fidelity, hyperband_max_t


def fifo(spec: Spec, f: Fidelity) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def asha(spec: Spec, f: Fidelity) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    # Ray's hints say int; budgets in tokens may be fractional and the schedulers compare them as numbers.
    return ASHAScheduler(time_attr=f.time_attr, max_t=f.max_t,  # type: ignore[arg-type]
                         grace_period=f.grace_period,  # type: ignore[arg-type]
                         reduction_factor=spec.search.reduction_factor)


def rung_asha(spec: Spec, f: Fidelity) -> Any:
    from tuner.schedulers.rung_asha import RungASHA

    return RungASHA(time_attr=f.time_attr, levels=f.rungs, reduction_factor=spec.search.reduction_factor)


def hyperband(spec: Spec, f: Fidelity) -> Any:
    from tuner.schedulers.hyperband import ResumingHyperBand

    # Over reports, not tokens: tuner.spec.fidelity.hyperband_max_t says why.
    time_attr = f.time_attr if spec.is_custom else "training_iteration"
    return ResumingHyperBand(time_attr=time_attr, max_t=hyperband_max_t(spec, f),  # type: ignore[arg-type]
                              reduction_factor=spec.search.reduction_factor)


def median(spec: Spec, f: Fidelity) -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr=f.time_attr, grace_period=f.grace_period, min_samples_required=3)


# --- population based training --------------------------------------------------------------------------------

def perturbation_interval(spec: Spec, f: Fidelity) -> float:
    """Default: every second report, so a trial has a checkpoint of the score it is judged by."""
    return spec.search.perturbation_interval or 2 * f.eval_interval


class ClipToSpace:
    """PBT perturbs by x0.8 / x1.2 without bounds; keep every mutated value inside its search-space range (a
    dropout of 1.1 would fail the trial's spec)."""

    def __init__(self, bounds: dict[str, tuple[float, float]], nested: bool):
        self.bounds, self.nested = bounds, nested

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, (lo, hi) in self.bounds.items():
            parent, _, leaf = key.rpartition(".") if self.nested else ("", "", key)
            node = tree.get_path(config, parent) if parent else config
            value = min(max(node[leaf], lo), hi)
            node[leaf] = type(node[leaf])(value)
        return config


def _ranges(spec: Spec) -> dict[str, tuple[float, float]]:
    return {k: (min(d.candidates()), max(d.candidates())) for k, d in spec.dimensions().items() if not d.is_discrete}


def _sharded(spec: Spec) -> bool:
    return spec.resources.workers_per_trial > 1


def pbt(spec: Spec, f: Fidelity) -> Any:
    from tuner.schedulers.pbt import CheckpointedPBT

    s = spec.search
    domains = spec.tune_domains()
    mutations = {k: list(d.args) if d.is_discrete else domains[k] for k, d in spec.dimensions().items()}
    return CheckpointedPBT(
        time_attr=f.time_attr, max_t=f.max_t, perturbation_interval=perturbation_interval(spec, f),
        hyperparam_mutations=spec.nest(mutations), quantile_fraction=s.quantile_fraction,
        resample_probability=s.resample_probability, yield_to_waiting=not _sharded(spec), synch=s.synch,
        custom_explore_fn=ClipToSpace(_ranges(spec), nested=not spec.is_custom))


def pb2(spec: Spec, f: Fidelity) -> Any:
    from tuner.schedulers.pbt import CheckpointedPB2

    bounds = {k: list(r) for k, r in _ranges(spec).items()}
    return CheckpointedPB2(
        time_attr=f.time_attr, max_t=f.max_t, perturbation_interval=perturbation_interval(spec, f),
        hyperparam_bounds=spec.nest(bounds), quantile_fraction=spec.search.quantile_fraction,
        yield_to_waiting=not _sharded(spec), synch=spec.search.synch,
        custom_explore_fn=ClipToSpace(_ranges(spec), nested=not spec.is_custom))
