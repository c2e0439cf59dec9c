"""The searcher contract, over every searcher tuner offers, through Ray Tune's SearchAlgorithm interface (the one
Tune itself drives): suggest, observe, save/restore, seeded repeatability, bounds and types."""

from __future__ import annotations

import math
import statistics

import pytest
from ray.tune.experiment import Experiment
from ray.tune.search import Searcher, SearchGenerator

from tuner.search import SEARCHERS, make_searcher
from tuner.spec import validate
from tuner.spec.fidelity import fidelity
from tuner.sweep.tuner import param_space

SPACE = {
    "x": {"uniform": [0.0, 1.0]},
    "lr": {"loguniform": [1.0e-4, 1.0e-1]},
    "n": {"randint": [1, 6]},
    "q": {"quniform": [0.0, 1.0, 0.25]},
    "c": {"choice": ["a", "b", "c"]},
}
GRID_SPACE = {"n": {"grid": [1, 2, 3]}, "c": {"choice": ["a", "b"]}}
VARIANTS = [(name, {}) for name in SEARCHERS.names() if name not in ("optuna", "bayesopt")]
VARIANTS += [("bayesopt", {"acquisition": a}) for a in ("ucb", "ei", "poi")]
VARIANTS += [("optuna", {"sampler": s}) for s in ("tpe", "gp", "cmaes", "random")]
IDS = [f"{n}-{next(iter(o.values()))}" if o else n for n, o in VARIANTS]


def objective(config: dict) -> float:
    return ((config.get("x", 0.5) - 0.3) ** 2 + (math.log10(config.get("lr", 1e-3)) + 2.5) ** 2 / 10
            + (config["n"] - 3) ** 2 / 10 + {"a": 0.1, "b": 0.0, "c": 0.2}[config["c"]])


def _noop(config: dict) -> None:
    pass


@pytest.fixture
def make(tmp_path):
    (tmp_path / "obj.py").write_text("def f(config):\n    pass\n")

    def build(name: str, options: dict, seed: int = 0, num_trials: int = 8):
        space = GRID_SPACE if name == "grid" else SPACE
        spec = validate({"name": "contract", "trainable": "obj:f",
                         "search": {"metric": "loss", "mode": "min", "algorithm": name, "scheduler": "fifo",
                                    "num_trials": num_trials, "seed": seed, "space": space, **options}},
                        spec_dir=tmp_path)
        space = param_space(spec, fidelity(spec), None)
        alg = make_searcher(spec)
        if isinstance(alg, Searcher):
            alg = SearchGenerator(alg)
        alg.set_search_properties("loss", "min", space)
        n = 1 if name == "grid" else num_trials
        alg.add_configurations([Experiment("contract", _noop, config=space, num_samples=n,
                                           storage_path=str(tmp_path / "storage"))])
        return spec, alg

    return build


def drive(alg, n: int) -> list[dict]:
    """Suggest and observe n trials, one at a time."""
    configs = []
    for _ in range(n):
        trial = alg.next_trial()
        assert trial is not None, "the searcher gave no trial"
        config = {k: trial.config[k] for k in ("x", "lr", "n", "q", "c") if k in trial.config}
        configs.append(config)
        alg.on_trial_complete(trial.trial_id, {"loss": objective(config), "training_iteration": 1})
    return configs


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_suggestions_respect_bounds_and_types(make, name, options):
    _, alg = make(name, options)
    configs = drive(alg, 6)
    for c in configs:
        assert c["c"] in ("a", "b", "c") and isinstance(c["n"], int) and 1 <= c["n"] <= (3 if name == "grid" else 5)
        if name != "grid":
            assert isinstance(c["x"], float) and 0.0 <= c["x"] <= 1.0
            assert 1e-4 <= c["lr"] <= 1e-1
            assert c["q"] in (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_same_seed_same_suggestions(make, name, options):
    a = drive(make(name, options, seed=3)[1], 6)
    b = drive(make(name, options, seed=3)[1], 6)
    assert a == b
    if name not in ("grid",):
        assert drive(make(name, options, seed=4)[1], 6) != a


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_save_and_restore_continue_identically(make, name, options, tmp_path):
    _, alg = make(name, options)
    drive(alg, 3)
    alg.save_to_dir(str(tmp_path), session_str="s")
    _, restored = make(name, options)
    restored.restore_from_dir(str(tmp_path))
    assert drive(restored, 3) == drive(alg, 3)


def test_grid_runs_every_combination_once(make):
    _, alg = make("grid", {})
    configs = drive(alg, 6)
    assert sorted((c["n"], c["c"]) for c in configs) == sorted((n, c) for n in (1, 2, 3) for c in ("a", "b"))
    assert alg.next_trial() is None and alg.is_finished()


LEARNERS = [("tpe", {}), ("bayesopt", {"acquisition": "ucb"}), ("optuna", {"sampler": "tpe"}),
            ("optuna", {"sampler": "gp"}), ("optuna", {"sampler": "cmaes"})]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), LEARNERS, ids=[f"{n}-{o}" for n, o in LEARNERS])
def test_model_based_searchers_learn(make, name, options):
    """After their random startup trials, model-based searchers propose better configs than that start."""
    _, alg = make(name, options, num_trials=24)
    values = [objective(c) for c in drive(alg, 24)]
    startup = 8  # min(10, max(2, 24 // 3))
    assert statistics.median(values[startup:]) < statistics.median(values[:startup])
