"""Searcher and scheduler registries and the catalog the checks read: lazy, named, and an unknown name lists the
valid ones."""

from __future__ import annotations

import pytest

from tuner._util.registry import UnknownNameError
from tuner.schedulers import SCHEDULERS, make_scheduler
from tuner.search import SEARCHERS, make_searcher
from tuner.spec import validate
from tuner.spec.fidelity import fidelity


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        SEARCHERS.get("tpee")
    assert "did you mean 'tpe'" in str(e.value) and "bayesopt, grid, mftpe, optuna, random, tpe" in str(e.value)
    with pytest.raises(UnknownNameError, match="valid: asha, fifo, hyperband, median, pb2, pbt"):
        SCHEDULERS.get("pbtx")


@pytest.mark.parametrize("name", SEARCHERS.names())
def test_every_searcher_builds(tiny_raw, name):
    space = {"train.batch_size": {"choice": [2, 4]}} if name == "grid" else None
    spec = validate(tiny_raw(search={"algorithm": name, **({"space": space} if space else {})}))
    assert make_searcher(spec) is not None


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_builds_with_the_fidelity(tiny_raw, name):
    spec = validate(tiny_raw(search={"scheduler": name, "algorithm": "random", "max_concurrent": None}))
    scheduler = make_scheduler(spec, fidelity(spec))
    if name == "hyperband":  # brackets over reports, which come at equal token points
        assert (scheduler._time_attr, scheduler._max_t_attr) == ("training_iteration", 4)
    elif name != "fifo":
        assert scheduler._time_attr == "tokens"


def test_the_catalog_names_exactly_the_registered_searchers_and_schedulers():
    # The spec's checks know the names from the catalog, without importing the registries' Ray-backed factories.
    from tuner.spec import catalog

    assert sorted(catalog.SEARCHERS) == sorted(SEARCHERS.names())
    assert sorted(catalog.SCHEDULERS) == sorted(SCHEDULERS.names())
    assert set(catalog.LEARNING_SEARCHERS) <= set(catalog.SEARCHERS)
    assert set(catalog.POPULATION_SCHEDULERS) <= set(catalog.SCHEDULERS)
