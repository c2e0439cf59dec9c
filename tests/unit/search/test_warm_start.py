"""Warm-starting searchers with past observations (tuner extend): the searcher's state holds them, and it does not
suggest them again."""

from __future__ import annotations

import pytest
from ray import tune

from tuner.search.warm import WarmStarted

SPACE = {"train": {"lr": tune.loguniform(1e-4, 1e-1), "batch_size": tune.choice([8, 16])}}
PAST = [({"train": {"lr": 1e-3, "batch_size": 8}}, 2.5), ({"train": {"lr": 3e-2, "batch_size": 16}}, 4.0),
        ({"train": {"lr": 2e-3, "batch_size": 16}}, 2.2)]


def searcher(kind: str):
    points = [p for p, _ in PAST]
    if kind == "tpe":
        from tuner.search._hyperopt import NestedPointsHyperOptSearch

        return NestedPointsHyperOptSearch(points_to_evaluate=points, n_initial_points=2, random_state_seed=0)
    if kind == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        from ray.tune.utils import flatten_dict

        return OptunaSearch(points_to_evaluate=[flatten_dict(p) for p in points], seed=0)
    from tuner.search._bayesopt import BayesOptSearcher

    return BayesOptSearcher(points_to_evaluate=points, n_initial_points=2)


@pytest.mark.parametrize("kind", ["tpe", "optuna", "bayesopt"])
def test_past_observations_are_replayed_before_any_new_suggestion(kind):
    inner = searcher(kind)
    warm = WarmStarted(inner, [v for _, v in PAST], "val_loss", "min")
    warm.set_search_properties("val_loss", "min", SPACE)
    if kind == "tpe":
        losses = [t["result"]["loss"] for t in inner._hpopt_trials.trials]
        assert sorted(losses) == sorted(v for _, v in PAST)
    elif kind == "optuna":
        assert [t.value for t in inner._ot_study.trials] == [v for _, v in PAST]
    else:
        assert [-target for _, target in inner._observed] == [v for _, v in PAST]
    new = [warm.suggest(f"t{i}") for i in range(4)]
    assert all(n is not None for n in new)
    assert not any(n["train"] == p["train"] for n in new for p, _ in PAST)  # past points are not proposed again
