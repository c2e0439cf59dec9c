"""The searchers and schedulers a spec may name, and what the checks need to know of them, without importing them
(they import Ray). ``tuner.search`` and ``tuner.schedulers`` register exactly these names; a unit test holds them to
it."""

from __future__ import annotations

from tuner._util.registry import UnknownNameError

SEARCHERS = ("grid", "random", "tpe", "mftpe", "bayesopt", "optuna")
SCHEDULERS = ("fifo", "asha", "rung-asha", "hyperband", "median", "pbt", "pb2")
# Model-based searchers: they learn from observations, so a warm start replays past trials into them.
LEARNING_SEARCHERS = ("tpe", "mftpe", "bayesopt", "optuna")
# What judges trials at the fixed rungs of tuner._util.rungs (the trial then reports at each rung milestone).
RUNG_SEARCHERS = ("mftpe",)
# Searchers that never run a config twice on a finite space (tuner.spec.space.space_size) and end the sweep once every
# config has run, however many trials search.num_trials allows.
DEDUPLICATING_SEARCHERS = ("mftpe",)
RUNG_SCHEDULERS = ("rung-asha",)
# Schedulers that mutate running trials' configs (they choose configurations themselves: random or grid only).
POPULATION_SCHEDULERS = ("pbt", "pb2")
# search.* keys that only one searcher or the population schedulers read.
SEARCHER_OPTIONS = {"sampler": "optuna", "acquisition": "bayesopt"}
POPULATION_OPTIONS = ("perturbation_interval", "quantile_fraction", "resample_probability", "synch")


def check_name(kind: str, name: str, valid: tuple[str, ...]) -> None:
    """UnknownNameError (a ValueError that lists the valid names) unless ``name`` is one of them."""
    if name not in valid:
        raise UnknownNameError(kind, name, valid)
