"""The bayes_opt 3.x searcher, driven through Ray Tune's Searcher API; one real Tuner run proves Ray accepts it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray import tune

from tuner.search._bayesopt import BayesOptSearcher, _dimension, bayesopt
from tuner.spec import Spec

OBJ = object()  # a choice is returned as its own object, not a copy or a numpy scalar

# domain, every value it may take (a set) or its (low, high) for continuous ones
KINDS = {
    "uniform": (tune.uniform(-1.0, 2.0), (-1.0, 2.0)),
    "loguniform": (tune.loguniform(1e-4, 1e-1), (1e-4, 1e-1)),
    "quniform": (tune.quniform(0.1, 0.9, 0.1), {round(0.1 * k, 10) for k in range(1, 10)}),
    "qloguniform": (tune.qloguniform(0.01, 1.0, 0.01), {round(0.01 * k, 10) for k in range(1, 101)}),
    "randint": (tune.randint(0, 3), {0, 1, 2}),  # upper exclusive
    "lograndint": (tune.lograndint(1, 8), set(range(1, 8))),  # upper exclusive
    "qrandint": (tune.qrandint(0, 20, 5), {0, 5, 10, 15, 20}),  # upper inclusive for q > 1
    "qrandint_q1": (tune.qrandint(1, 5, 1), {1, 2, 3, 4}),  # ... but exclusive for q == 1
    "qlograndint": (tune.qlograndint(2, 16, 2), {2, 4, 6, 8, 10, 12, 14, 16}),
    "choice": (tune.choice(["a", OBJ, 3]), {"a", OBJ, 3}),
}


def _check(value, allowed):
    if isinstance(allowed, tuple):
        assert type(value) is float and allowed[0] <= value <= allowed[1]
    elif all(isinstance(a, int) for a in allowed):
        assert type(value) is int and value in allowed
    elif all(isinstance(a, float) for a in allowed):
        assert type(value) is float and round(value, 10) in allowed
    else:
        assert any(value is a for a in allowed)


def _key(value):
    return round(value, 10) if isinstance(value, float) else id(value) if value is OBJ else value


def run(searcher, objective, n, prefix="t"):
    """n sequential suggest/complete rounds; the suggested configs."""
    configs = []
    for i in range(n):
        config = searcher.suggest(f"{prefix}{i}")
        searcher.on_trial_complete(f"{prefix}{i}", {"loss": objective(config)})
        configs.append(config)
    return configs


@pytest.mark.parametrize("kind", KINDS)
def test_the_grid_ends_are_the_samplers_bounds(kind):
    domain, allowed = KINDS[kind]
    dim = _dimension(kind, domain)
    low, high = dim.pbounds()[:2]
    decoded = [dim.decode(x) for x in np.linspace(low, high, 2001)]
    for v in decoded:
        _check(v, allowed)
    if isinstance(allowed, set):  # every allowed value is reachable, no other
        assert {_key(v) for v in decoded} == {_key(a) for a in allowed}
    else:
        assert decoded[0] == pytest.approx(allowed[0]) and decoded[-1] == pytest.approx(allowed[1])


@pytest.mark.parametrize("kind", KINDS)
def test_suggestions_are_plain_python_values_in_bounds(kind):
    domain, allowed = KINDS[kind]
    s = BayesOptSearcher({"v": domain}, metric="loss", mode="max", n_initial_points=2, random_state=1)
    # maximizing the value (or the choice's index) drives the GP towards the upper end
    choices = getattr(domain, "categories", None)
    for config in run(s, lambda c: float(choices.index(c["v"]) if choices else c["v"]), 6):
        _check(config["v"], allowed)


def test_nested_space_with_constants_passes_them_through():
    space = {"train": {"lr": tune.loguniform(1e-4, 1e-1), "batch_size": tune.choice([8, 16, 32]), "seed": 7},
             "model": {"hidden_size": 64, "family": "llama", "layers": [1, 2]}, "name": "x"}
    s = BayesOptSearcher(space, metric="loss", mode="min", n_initial_points=2)
    for config in run(s, lambda c: c["train"]["lr"] * c["train"]["batch_size"], 4):
        assert set(config) == {"train", "model", "name"} and config["name"] == "x"
        assert config["model"] == {"hidden_size": 64, "family": "llama", "layers": [1, 2]}
        assert set(config["train"]) == {"lr", "batch_size", "seed"} and config["train"]["seed"] == 7
        assert 1e-4 <= config["train"]["lr"] <= 1e-1 and config["train"]["batch_size"] in (8, 16, 32)


def test_set_search_properties_like_rays_searchers():
    s = BayesOptSearcher()
    assert s.set_search_properties("loss", "min", {"a": {"x": tune.uniform(0, 1)}, "c": 1})
    assert (s.metric, s.mode) == ("loss", "min")
    assert not s.set_search_properties("acc", "max", {"y": tune.uniform(0, 1)})  # the space is set already
    config = s.suggest("t0")
    assert set(config) == {"a", "c"} and 0 <= config["a"]["x"] <= 1
    with pytest.raises(RuntimeError, match="no search space"):
        BayesOptSearcher(metric="loss", mode="min").suggest("t0")


def quadratic(c):
    return (c["x"] - 0.3) ** 2


def test_same_seed_and_observations_give_the_same_suggestions():
    space = {"x": tune.uniform(0, 1), "n": tune.randint(1, 4)}
    a, b, c = (BayesOptSearcher(space, metric="loss", mode="min", n_initial_points=3, random_state=seed)
               for seed in (5, 5, 6))
    first = run(a, quadratic, 6)
    assert run(b, quadratic, 6) == first  # the GP rounds too: same seed, same observations
    assert run(c, quadratic, 6) != first


@pytest.mark.parametrize("mode", ["min", "max"])
def test_mode_min_finds_the_minimum_and_max_the_far_edge(mode):
    # (x - 0.3)^2 on [0, 1]: its minimum is at 0.3 and its maximum at the right edge, 1
    s = BayesOptSearcher({"x": tune.uniform(0, 1)}, metric="loss", mode=mode, n_initial_points=3, random_state=0)
    xs = [c["x"] for c in run(s, quadratic, 15)]
    tail = xs[-4:]
    if mode == "min":
        assert all(abs(x - 0.3) < 0.05 for x in tail), xs
    else:
        assert all(x > 0.95 for x in tail), xs


@pytest.mark.parametrize("acquisition", ["ucb", "ei", "poi"])
def test_every_acquisition_runs(acquisition):
    s = BayesOptSearcher({"x": tune.uniform(0, 1)}, metric="loss", mode="min", acquisition=acquisition,
                         n_initial_points=2)
    assert all(0 <= c["x"] <= 1 for c in run(s, quadratic, 4))


def test_points_to_evaluate_come_first_and_may_be_partial():
    space = {"train": {"lr": tune.loguniform(1e-4, 1e-1), "batch_size": tune.choice([8, 16, 32])}, "k": 1}
    points = [{"train": {"lr": 3e-4, "batch_size": 16}}, {"train": {"lr": 2e-3}}]
    s = BayesOptSearcher(space, metric="loss", mode="min", points_to_evaluate=points, n_initial_points=2)
    first, second, third = run(s, lambda c: c["train"]["lr"], 3)
    assert first == {"train": {"lr": 3e-4, "batch_size": 16}, "k": 1}
    assert second["train"]["lr"] == 2e-3 and second["train"]["batch_size"] in (8, 16, 32)
    assert third["train"]["lr"] not in (3e-4, 2e-3)
    with pytest.raises(ValueError, match="not one of the choices"):
        BayesOptSearcher(space, metric="loss", mode="min", points_to_evaluate=[{"train": {"batch_size": 12}}]
                         ).suggest("t0")


def test_pending_trials_do_not_collapse_onto_one_point():
    space = {"x": tune.uniform(0, 1), "y": tune.uniform(-1, 1)}
    s = BayesOptSearcher(space, metric="loss", mode="min", n_initial_points=4)
    run(s, lambda c: (c["x"] - 0.3) ** 2 + (c["y"] + 0.2) ** 2, 8)
    pending = [s.suggest(f"p{i}") for i in range(4)]  # none completes: each must steer clear of the others
    for i, a in enumerate(pending):
        for b in pending[:i]:
            assert math.dist((a["x"], a["y"]), (b["x"], b["y"])) > 0.02, pending
    discrete = BayesOptSearcher({"a": tune.choice(["p", "q", "r"]), "n": tune.randint(0, 3)}, metric="loss",
                                mode="min", n_initial_points=3)
    run(discrete, lambda c: (c["a"] == "q") + c["n"], 5)
    pending = [tuple(discrete.suggest(f"p{i}").values()) for i in range(4)]
    assert len(set(pending)) == 4, pending


def test_only_finite_metrics_are_observed_and_pending_is_dropped_either_way():
    s = BayesOptSearcher({"x": tune.uniform(0, 1)}, metric="loss", mode="min", n_initial_points=2)
    for i, result in enumerate([{"loss": float("nan")}, {"other": 1.0}, None, {"loss": 0.5}]):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", result, error=result is None)
    s.on_trial_result("t9", {"loss": 0.1})  # intermediate results are ignored, unknown trials too
    s.on_trial_complete("t9", {"loss": 0.1})
    state = s.get_state()
    assert [target for _, target in state["_observed"]] == [-0.5] and state["_pending"] == {}


def test_save_and_restore_continue_exactly(tmp_path):
    space = {"x": tune.uniform(0, 1), "b": tune.choice([1, 2, 4])}
    s = BayesOptSearcher(space, metric="loss", mode="min", n_initial_points=3, random_state=3)
    run(s, quadratic, 5)
    s.suggest("pending")
    s.save(str(tmp_path / "searcher.pkl"))
    restored = BayesOptSearcher()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert (restored.metric, restored.mode) == ("loss", "min")
    for searcher in (s, restored):
        searcher.on_trial_complete("pending", {"loss": 0.2})
    assert run(restored, quadratic, 3, prefix="r") == run(s, quadratic, 3, prefix="r")


@pytest.mark.parametrize(("space", "key"), [
    ({"train": {"lr": tune.grid_search([1e-3, 1e-2])}}, "train/lr"),
    ({"model": {"width": tune.sample_from(lambda _: 3)}}, "model/width"),
    ({"noise": tune.randn(0.0, 1.0)}, "noise"),
])
def test_unsupported_domains_name_the_key(space, key):
    with pytest.raises(ValueError, match=key):
        BayesOptSearcher(space, metric="loss", mode="min")
    with pytest.raises(ValueError, match=key):
        BayesOptSearcher().set_search_properties("loss", "min", space)


def test_unknown_acquisition_lists_the_valid_ones():
    with pytest.raises(ValueError, match="ucb, ei, poi"):
        BayesOptSearcher(acquisition="pi")


def test_factory_reads_the_spec():
    spec = Spec(name="t", search={"num_trials": 12, "seed": 3, "points_to_evaluate": [{"train.lr": 1e-3}]})
    state = bayesopt(spec).get_state()
    assert state["_n_initial"] == 4 and state["_random_state"] == 3 and state["_acquisition"] == "ucb"
    assert state["_points"] == [{"train/lr": 1e-3}] and state["_metric"] is None  # Ray passes metric/mode
    assert bayesopt(Spec(name="t", search={"num_trials": 60})).get_state()["_n_initial"] == 10


@pytest.mark.integration
def test_a_real_tuner_accepts_it(ray_local, tmp_path):
    def trainable(config):
        tune.report({"loss": (config["train"]["x"] - 0.3) ** 2 + config["train"]["n"]})

    tuner = tune.Tuner(
        trainable,
        param_space={"train": {"x": tune.uniform(0, 1), "n": tune.randint(0, 2)}, "model": {"hidden_size": 64}},
        tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=6, reuse_actors=True,
                                    search_alg=BayesOptSearcher(n_initial_points=2, random_state=0)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="bayesopt", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 6 and not results.errors
    configs = [r.config for r in results]
    assert all(c["model"] == {"hidden_size": 64} and 0 <= c["train"]["x"] <= 1 for c in configs)
    assert len({c["train"]["x"] for c in configs}) == 6
    assert list(tmp_path.rglob("searcher-state-*.pkl"))  # Tune checkpointed it through save()
