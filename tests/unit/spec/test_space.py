"""The search-space dialect and its conversion to Ray Tune domains."""

from __future__ import annotations

import pytest
from ray import tune
from ray.tune.search.sample import Categorical, Float, Integer

from tuner.spec import validate
from tuner.spec.fidelity import fidelity
from tuner.spec.space import SpaceError, parse_dimension, parse_space, space_size
from tuner.sweep.summary import num_trials
from tuner.sweep.tuner import param_space


@pytest.mark.parametrize(("raw", "domain", "sampler"), [
    ({"uniform": [0.0, 1.0]}, Float, "Uniform"),
    ({"loguniform": [1e-4, 1e-1]}, Float, "LogUniform"),
    ({"quniform": [0.0, 1.0, 0.1]}, Float, "Quantized"),
    ({"qloguniform": [1e-4, 1e-1, 1e-4]}, Float, "Quantized"),
    ({"randint": [1, 5]}, Integer, "Uniform"),
    ({"choice": [8, 16, 32]}, Categorical, "Uniform"),
])
def test_dimension_to_tune(raw, domain, sampler):
    d = parse_dimension(raw).to_tune()
    assert isinstance(d, domain)
    assert type(d.get_sampler()).__name__.lstrip("_") == sampler


def test_samples_stay_in_bounds():
    for raw, lo, hi in (({"uniform": [0.2, 0.4]}, 0.2, 0.4), ({"loguniform": [1e-4, 1e-2]}, 1e-4, 1e-2),
                        ({"randint": [2, 5]}, 2, 4), ({"quniform": [8, 64, 8]}, 8, 64)):
        values = parse_dimension(raw).to_tune().sample(size=200)
        assert lo <= min(values) and max(values) <= hi


def test_integer_quantized_dims_give_ints():
    d = parse_dimension({"quniform": [8, 64, 8]})
    assert d.is_integer
    values = d.to_tune(integer=True).sample(size=50)
    assert all(isinstance(v, int) and v % 8 == 0 for v in values)


def test_grid_and_choice_become_grid_search_under_grid():
    assert parse_dimension({"grid": [1, 2]}).to_tune(grid=True) == tune.grid_search([1, 2])
    assert parse_dimension({"choice": [1, 2]}).to_tune(grid=True) == tune.grid_search([1, 2])


@pytest.mark.parametrize("raw", [
    5, {"uniform": [0, 1], "choice": [1]}, {"normal": [0, 1]}, {"uniform": [1]}, {"uniform": ["a", "b"]},
    {"uniform": [1, 1]}, {"loguniform": [-1, 1]}, {"randint": [0.5, 3]}, {"quniform": [0, 1, 0]}, {"choice": []},
])
def test_malformed_dimensions(raw):
    with pytest.raises(SpaceError):
        parse_dimension(raw)


def test_parse_space_collects_every_problem():
    dims, problems = parse_space({"a": {"uniform": [0, 1]}, "b": {"x": 1}, "c": 3})
    assert list(dims) == ["a"] and [k for k, _ in problems] == ["b", "c"]


def test_a_finite_space_caps_the_trials_of_the_searcher_that_runs_each_config_once(tiny_raw):
    finite = {"train.batch_size": {"choice": [2, 4, 4]}, "model.num_layers": {"randint": [1, 4]},
              "train.warmup_steps": {"quniform": [0, 10, 5]}}
    assert space_size(parse_space(finite)[0]) == 2 * 3 * 3  # distinct values: the repeated 4 counts once
    assert space_size(parse_space({**finite, "train.lr": {"loguniform": [1e-4, 1e-2]}})[0]) is None
    assert space_size(parse_space({"model.num_layers": {"randint": [1, 100]}})[0]) is None  # over 64 values
    def trials(algorithm: str, n: int) -> int:
        return num_trials(validate(tiny_raw(search={"algorithm": algorithm, "scheduler": "asha", "num_trials": n,
                                                    "space": finite})))

    assert trials("mftpe", 50) == 18 and trials("mftpe", 10) == 10 and trials("tpe", 50) == 50


def test_trial_gets_the_full_resolved_spec(tiny_raw):
    spec = validate(tiny_raw(search={"space": {"train.lr": {"loguniform": [1e-4, 1e-2]},
                                               "model.num_layers": {"choice": [1, 2]}}}))
    ps = param_space(spec, fidelity(spec), data_dir=None)
    assert set(ps) == {"model", "data", "train", "resources", "run"}
    assert isinstance(ps["train"]["lr"], Float) and isinstance(ps["model"]["num_layers"], Categorical)
    assert ps["train"]["batch_size"] == 4 and ps["model"]["hidden_size"] == 32
    assert ps["run"]["fidelity"]["time_attr"] == "tokens"
