"""The searcher contract, over every searcher tuner offers, through Ray Tune's SearchAlgorithm interface (the one
Tune itself drives): suggest, observe, save/restore and pickling, seeded repeatability, bounds and types, NaN and
infinite results, and the warm start of ``tuner extend`` (tuner.search.warm.WarmStarted)."""

from __future__ import annotations

import math
import pickle
import statistics

import pytest
from ray import cloudpickle
from ray.tune.experiment import Experiment
from ray.tune.search import Searcher, SearchGenerator
from threadpoolctl import threadpool_limits

from tuner.search import SEARCHERS, make_searcher
from tuner.search.warm import WarmStarted
from tuner.spec import validate
from tuner.spec.catalog import LEARNING_SEARCHERS
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
# bayesopt's acquisition function only scores candidates: seeding, save/restore, pickling, NaN handling, warm start
# and the constant liar are one code path for all three, so the contracts run EI (each bayesopt variant costs ~10 s
# here); UCB and PoI are checked for bounds and types too, and UCB learns (test_model_based_searchers_learn).
VARIANTS = [(name, {}) for name in SEARCHERS.names() if name not in ("optuna", "bayesopt")]
VARIANTS += [("bayesopt", {"acquisition": "ei"})]
VARIANTS += [("optuna", {"sampler": s}) for s in ("tpe", "gp", "cmaes", "random")]


def ids(variants: list[tuple[str, dict]]) -> list[str]:
    return [f"{n}-{next(iter(o.values()))}" if o else n for n, o in variants]


IDS = ids(VARIANTS)


def objective(config: dict) -> float:
    return ((config.get("x", 0.5) - 0.3) ** 2 + (math.log10(config.get("lr", 1e-3)) + 2.5) ** 2 / 10
            + (config["n"] - 3) ** 2 / 10 + {"a": 0.1, "b": 0.0, "c": 0.2}[config["c"]])


def _noop(config: dict) -> None:
    pass


@pytest.fixture(autouse=True)
def one_thread():
    """The GP searchers' linear algebra (numpy's BLAS for bayesopt, torch for optuna's gp) on one thread: their
    matrices are tiny, and threads only contend on a small machine (2-3x slower on two cores)."""
    import torch  # (already imported: the param space imports the LLM trial)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def make(tmp_path):
    (tmp_path / "obj.py").write_text("def f(config):\n    pass\n")

    def build(name: str, options: dict, seed: int = 0, num_trials: int = 8, warm: list[tuple[dict, float]] = (),
              calls: list | None = None):
        """``warm``: past (config, value) pairs to warm-start it with, as ``tuner extend`` does; ``calls`` records
        what the warm start asks of the searcher it wraps."""
        space = GRID_SPACE if name == "grid" else SPACE
        points = {"points_to_evaluate": [c for c, _ in warm]} if warm else {}
        spec = validate({"name": "contract", "trainable": "obj:f",
                         "search": {"metric": "loss", "mode": "min", "algorithm": name, "scheduler": "fifo",
                                    "num_trials": num_trials, "seed": seed, "space": space, **points, **options}},
                        spec_dir=tmp_path)
        space = param_space(spec, fidelity(spec), None)
        alg = make_searcher(spec)
        if calls is not None:
            record(alg, calls)
        if warm:
            alg = WarmStarted(alg, [v for _, v in warm], "loss", "min")
        if isinstance(alg, Searcher):
            alg = SearchGenerator(alg)
        alg.set_search_properties("loss", "min", space)
        n = 1 if name == "grid" else num_trials
        alg.add_configurations([Experiment("contract", _noop, config=space, num_samples=n,
                                           storage_path=str(tmp_path / "storage"))])
        return spec, alg

    return build


def record(searcher: Searcher, calls: list) -> None:
    suggest, complete = searcher.suggest, searcher.on_trial_complete

    def suggesting(trial_id: str) -> dict | None:
        config = suggest(trial_id)
        calls.append(("suggest", trial_id, config))
        return config

    def completing(trial_id: str, result: dict | None = None, error: bool = False) -> None:
        calls.append(("complete", trial_id, (result or {}).get("loss")))
        complete(trial_id, result=result, error=error)

    searcher.suggest, searcher.on_trial_complete = suggesting, completing


def drive(alg, n: int, value=objective) -> list[dict]:
    """Suggest and observe n trials, one at a time; ``value(config, i)`` is the i-th trial's loss."""
    configs = []
    for i in range(n):
        trial = alg.next_trial()
        assert trial is not None, "the searcher gave no trial"
        assert not trial.trial_id.startswith("warm_start_")
        config = {k: trial.config[k] for k in ("x", "lr", "n", "q", "c") if k in trial.config}
        configs.append(config)
        loss = objective(config) if value is objective else value(config, i)
        alg.on_trial_complete(trial.trial_id, {"loss": loss, "training_iteration": 1})
    return configs


def assert_in_bounds(name: str, configs: list[dict]) -> None:
    for c in configs:
        assert c["c"] in ("a", "b", "c") and isinstance(c["n"], int) and 1 <= c["n"] <= (3 if name == "grid" else 5)
        if name != "grid":
            assert isinstance(c["x"], float) and 0.0 <= c["x"] <= 1.0
            assert 1e-4 <= c["lr"] <= 1e-1
            assert c["q"] in (0.0, 0.25, 0.5, 0.75, 1.0)


def model(alg):
    """The learning searcher inside Tune's SearchGenerator (and a warm start)."""
    searcher = alg.searcher
    return searcher.searcher if isinstance(searcher, WarmStarted) else searcher


def observed(alg, name: str) -> list[float]:
    """The losses a model-based searcher has learnt from, in the order it took them."""
    searcher = model(alg)
    if name == "tpe":  # hyperopt minimizes metric_op * loss (+1 for mode min)
        return [t["result"]["loss"] for t in searcher._hpopt_trials.trials if t["result"].get("status") == "ok"]
    if name == "optuna":
        return [t.value for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
    if name == "mftpe":  # its full-fidelity observations (fifo: every completed trial)
        return list(searcher.records.values[searcher.records.top].values())
    return [-target for _, target in searcher._observed]  # bayesopt maximizes -loss


def best(alg, name: str) -> float:
    """The best loss, as the searcher's own library sees it."""
    searcher = model(alg)
    if name == "tpe":
        return searcher._hpopt_trials.best_trial["result"]["loss"]
    if name == "optuna":
        return searcher._ot_study.best_value
    if name == "mftpe":
        return min(searcher.records.values[searcher.records.top].values())
    return -max(target for _, target in searcher._observed)


BOUNDS_VARIANTS = VARIANTS + [("bayesopt", {"acquisition": a}) for a in ("ucb", "poi")]


@pytest.mark.parametrize(("name", "options"), BOUNDS_VARIANTS, ids=ids(BOUNDS_VARIANTS))
def test_suggestions_respect_bounds_and_types(make, name, options):
    _, alg = make(name, options)
    assert_in_bounds(name, drive(alg, 6))


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


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_pickle_round_trip(make, name, options):
    """Pickled after a few suggestions, the copy suggests what the original does. With ray.cloudpickle, as Tune
    pickles its search algorithm: plain pickle fails on Tune's own SearchAlgorithm (a local function of its
    argparse parser) and HyperOptSearch (a lambda)."""
    _, alg = make(name, options)
    drive(alg, 3)
    copied = pickle.loads(cloudpickle.dumps(alg))
    assert drive(copied, 2) == drive(alg, 2)


NONFINITE = (math.nan, math.inf, -math.inf)  # a diverged trial's loss; -inf would be the best of a min objective


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_nan_and_inf_results_break_nothing_and_are_never_the_best(make, name, options):
    n = 6 if name == "grid" else 7
    _, alg = make(name, options, num_trials=n)

    def loss(config: dict, i: int) -> float:  # trials 1, 3 and 5: NaN, inf, -inf
        return NONFINITE[i // 2] if i % 2 else objective(config)

    configs = drive(alg, n, loss)
    assert_in_bounds(name, configs)  # later suggestions came, in bounds
    if name == "grid":
        assert alg.next_trial() is None and alg.is_finished()
    if name in LEARNING_SEARCHERS:
        finite = [loss(c, i) for i, c in enumerate(configs) if i % 2 == 0]
        assert all(math.isfinite(v) for v in observed(alg, name)), "a non-finite loss went into the model"
        assert best(alg, name) == min(finite)


LEARNING_VARIANTS = [(n, o) for n, o in VARIANTS if n in LEARNING_SEARCHERS]
LEARNING_IDS = [i for i, (n, _) in zip(IDS, VARIANTS, strict=True) if n in LEARNING_SEARCHERS]
PAST = [({"x": 0.3, "lr": 3.0e-3, "n": 3, "q": 0.25, "c": "b"}, 0.01),
        ({"x": 0.9, "lr": 5.0e-2, "n": 1, "q": 1.0, "c": "c"}, 0.9),
        ({"x": 0.5, "lr": 1.0e-3, "n": 4, "q": 0.5, "c": "a"}, 0.25)]


def test_the_learning_searchers_are_registered():
    assert set(LEARNING_SEARCHERS) <= set(SEARCHERS.names())


@pytest.mark.parametrize(("name", "options"), LEARNING_VARIANTS, ids=LEARNING_IDS)
def test_warm_start_replays_the_past_before_any_new_suggestion(make, name, options):
    """tuner extend: each past config is suggested and completed with its value under a private id, before Tune
    asks for a trial; those ids and configs are never suggested again."""
    calls: list = []
    _, alg = make(name, options, warm=PAST, calls=calls)
    # Replayed when Tune set the search space: suggested and completed in turn, each past config with its value.
    replayed = [(f"warm_start_{i}", c, v) for i, (c, v) in enumerate(PAST)]
    assert calls == [call for t, c, v in replayed for call in (("suggest", t, c), ("complete", t, v))]
    assert sorted(observed(alg, name)) == sorted(v for _, v in PAST)
    assert best(alg, name) == min(v for _, v in PAST)
    configs = drive(alg, 2)  # (drive: no trial id is a replayed one)
    assert_in_bounds(name, configs)
    assert not any(c == p for c in configs for p, _ in PAST)
    suggested = [t for kind, t, _ in calls if kind == "suggest"]
    assert len(suggested) == len(set(suggested)) == len(PAST) + 2
    assert len(observed(alg, name)) == len(PAST) + 2


@pytest.mark.parametrize(("name", "options"), LEARNING_VARIANTS, ids=LEARNING_IDS)
def test_warm_started_searchers_save_restore_and_pickle(make, name, options, tmp_path):
    """A resumed extension neither replays the past again nor forgets it."""
    _, alg = make(name, options, warm=PAST)
    drive(alg, 1)
    alg.save_to_dir(str(tmp_path), session_str="s")
    _, restored = make(name, options, warm=PAST)
    restored.restore_from_dir(str(tmp_path))
    copied = pickle.loads(cloudpickle.dumps(alg))
    assert len(observed(restored, name)) == len(observed(copied, name)) == len(PAST) + 1
    expected = drive(alg, 2)
    assert drive(restored, 2) == expected
    assert drive(copied, 2) == expected


@pytest.mark.parametrize(("name", "options"), LEARNING_VARIANTS, ids=LEARNING_IDS)
def test_eight_trials_running_at_once_get_different_configs(make, name, options):
    """Eight suggestions while none of them has reported (a sweep with max_concurrent 8), after the searcher has a
    model: no two are the same config."""
    _, alg = make(name, options, num_trials=40)
    drive(alg, 24)
    running = [alg.next_trial() for _ in range(8)]
    configs = [tuple(sorted(t.config[k] for k in ("x", "lr", "n", "q", "c") if isinstance(t.config[k], float)))
               + tuple(str(t.config[k]) for k in ("n", "c")) for t in running]
    assert len(set(configs)) == 8, configs
    for t in running:
        alg.on_trial_complete(t.trial_id, {"loss": objective(t.config), "training_iteration": 1})
    assert_in_bounds(name, drive(alg, 2))


def test_grid_runs_every_combination_once(make):
    _, alg = make("grid", {})
    configs = drive(alg, 6)
    assert sorted((c["n"], c["c"]) for c in configs) == sorted((n, c) for n in (1, 2, 3) for c in ("a", "b"))
    assert alg.next_trial() is None and alg.is_finished()


LEARNERS = [("tpe", {}), ("mftpe", {}), ("bayesopt", {"acquisition": "ucb"}), ("optuna", {"sampler": "tpe"}),
            ("optuna", {"sampler": "gp"}), ("optuna", {"sampler": "cmaes"})]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), LEARNERS, ids=[f"{n}-{o}" for n, o in LEARNERS])
def test_model_based_searchers_learn(make, name, options):
    """After their random startup trials, model-based searchers propose better configs than that start."""
    _, alg = make(name, options, num_trials=24)
    values = [objective(c) for c in drive(alg, 24)]
    startup = 8  # min(10, max(2, 24 // 3))
    assert statistics.median(values[startup:]) < statistics.median(values[:startup])
