"""mftpe, the default searcher: observations per rung (a stopped trial is never a final result), BOHB's rule for the
rung it models on full-length results, the model across rungs below it, log scales and ordinal choices, the constant
liar, a warm start that replays rungs and the hedge pool."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray import tune

from tuner.search import _mftpe as mftpe_module
from tuner.search._mftpe import BANDWIDTH_FACTOR, MultiFidelityTPE
from tuner.search._space import param_of
from tuner.search.warm import WarmStarted

LEVELS = (1.0, 3.0, 9.0)
SPACE = {"lr": tune.loguniform(1e-5, 1e-1), "batch": tune.choice([8, 16, 32]), "act": tune.choice(["relu", "gelu"])}


def searcher(stops_early: bool = True, seed: int = 0) -> MultiFidelityTPE:
    s = MultiFidelityTPE(time_attr="t", levels=LEVELS, stops_early=stops_early, seed=seed)
    assert s.set_search_properties("loss", "min", dict(SPACE))
    return s


def loss(config: dict) -> float:
    return (math.log10(config["lr"]) + 3) ** 2 + (0.0 if config["batch"] == 16 else 0.5)


def test_a_stopped_trial_is_an_observation_at_its_rung_not_a_final_result():
    s = searcher()
    s.suggest("a")
    s.on_trial_result("a", {"t": 1, "loss": 0.5})
    s.on_trial_complete("a", {"t": 3, "loss": 0.4})  # stopped by the scheduler at its second rung
    assert [dict(v) for v in s.records.values] == [{"a": 0.5}, {"a": 0.4}, {}]
    s.suggest("b")
    s.on_trial_result("b", {"t": 9, "loss": 0.3})
    s.on_trial_complete("b", {"t": 9, "loss": 0.3})
    assert s.records.values[2] == {"b": 0.3}
    fifo = searcher(stops_early=False)  # nothing stops trials early: a completed trial ran its whole length
    fifo.suggest("c")
    fifo.on_trial_complete("c", {"t": 2, "loss": 0.7})
    assert fifo.records.values[2] == {"c": 0.7}
    fifo.suggest("d")
    fifo.on_trial_complete("d", {"t": 9, "loss": math.nan})  # a diverged trial teaches nothing
    assert "d" not in fifo.records.values[2] and not fifo.live


def test_a_trial_that_ended_on_its_own_is_a_full_length_result_wherever_it_ended():
    """Ray Tune gives a trial that returned its last result again; the result that made a scheduler stop a trial
    never reached on_trial_result."""
    s = searcher()
    s.suggest("once")  # an objective that reports once, below the first rung
    s.on_trial_result("once", {"t": 0.5, "loss": 0.2})
    s.on_trial_complete("once", {"t": 0.5, "loss": 0.2})
    s.suggest("short")  # stops itself between the second rung and the full trial
    for t, value in ((1, 0.6), (3, 0.5), (5, 0.4)):
        s.on_trial_result("short", {"t": t, "loss": value})
    s.on_trial_complete("short", {"t": 5, "loss": 0.4})
    s.suggest("cut")  # stopped by the scheduler at the second rung
    s.on_trial_result("cut", {"t": 1, "loss": 0.9})
    s.on_trial_complete("cut", {"t": 3, "loss": 0.8})
    assert s.records.values == [{"short": 0.6, "cut": 0.9}, {"short": 0.5, "cut": 0.8}, {"once": 0.2, "short": 0.4}]
    assert not s.last_seen


def test_it_models_on_the_highest_rung_where_both_sets_have_more_than_d_points():
    s = searcher()  # d = 3: the good set has max(4, 15%) points, the bad set needs 4 or more
    for i in range(8):
        s.suggest(f"t{i}")
        s.on_trial_result(f"t{i}", {"t": 1, "loss": float(i)})
    assert s.model_rung() == 0
    for i in range(7):
        s.on_trial_result(f"t{i}", {"t": 3, "loss": float(i)})
    assert s.model_rung() == 0  # 7 at rung 1: 4 good leave only 3 bad
    s.on_trial_result("t7", {"t": 3, "loss": 7.0})
    assert s.model_rung() == 1


def test_log_scales_and_numeric_choices_are_encoded_in_order():
    lr = param_of(("lr",), SPACE["lr"])
    assert lr.log and lr.encode(1e-3) == np.float64(0.5) and math.isclose(lr.decode(0.5), 1e-3)
    batch = param_of(("batch",), SPACE["batch"])
    assert batch.kind == "numeric" and batch.grid == (8, 16, 32) and batch.encode(16) == 0.5 and batch.decode(0.9) == 32
    assert param_of(("act",), SPACE["act"]).kind == "category"
    steps = param_of(("n",), tune.qrandint(0, 100, 10))
    assert steps.grid == tuple(range(0, 101, 10))


def test_concurrent_proposals_differ_and_learn_where_the_good_configs_are():
    s = searcher(stops_early=False, seed=3)
    configs = []
    for i in range(40):  # observed at full fidelity, one at a time
        configs.append(s.suggest(f"t{i}"))
        s.on_trial_complete(f"t{i}", {"t": 9, "loss": loss(configs[-1])})
    assert s.model_rung() == 2
    first, last = configs[:10], configs[20:]
    assert np.median([loss(c) for c in last]) < np.median([loss(c) for c in first])
    pending = [s.suggest(f"p{i}") for i in range(8)]  # 8 at once, none reported yet
    assert len({(round(c["lr"], 12), c["batch"], c["act"]) for c in pending}) == 8


def test_warm_start_replays_each_past_trials_rungs():
    s = searcher()
    past = [({"lr": 1e-3, "batch": 16, "act": "relu"}, [[1.0, 0.5], [3.0, 0.4], [9.0, 0.3]], 0.3),  # completed
            ({"lr": 1e-2, "batch": 8, "act": "gelu"}, [[1.0, 0.9]], 0.9),  # stopped at the first rung
            ({"lr": 1e-4, "batch": 8, "act": "gelu"}, [], 0.7)]  # reported once, below the first rung
    s.points = [c for c, _, _ in past]
    warm = WarmStarted(s, [v for _, _, v in past], "loss", "min", rungs=[r for _, r, _ in past])
    warm.set_search_properties("loss", "min", dict(SPACE))
    assert s.records.values == [{"warm_start_0": 0.5, "warm_start_1": 0.9}, {"warm_start_0": 0.4},
                                {"warm_start_0": 0.3, "warm_start_2": 0.7}]
    assert not s.live


@pytest.mark.parametrize("draws", [mftpe_module.UNTRIED_DRAWS, 0])  # 0: an untried config is found by listing them
def test_on_a_finite_space_it_never_reruns_a_config_and_ends_the_sweep_once_every_config_has_run(tmp_path, monkeypatch,
                                                                                                 draws):
    """A seeded trial rerun repeats its curve: on a space of choices it proposes each config once (TPE's good density,
    sitting on the best config, proposed it again and again: 26-45 distinct configs in 100 trials on 135), then
    finishes. With a continuous dimension nothing changes: no two draws coincide there."""
    from ray.tune.search import Searcher

    monkeypatch.setattr(mftpe_module, "UNTRIED_DRAWS", draws)

    def run(s: MultiFidelityTPE, n: int, start: int = 0) -> list:
        out = []
        for i in range(start, start + n):
            config = s.suggest(f"t{i}")
            out.append(config)
            if config != Searcher.FINISHED:  # the best config (lr 1e-3, batch 16) goes on, the others stop early
                best = config["lr"] == 1e-3 and config["batch"] == 16
                s.on_trial_complete(f"t{i}", {"t": 9 if best else 1, "loss": loss(config)})
        return out

    space = {"lr": tune.choice([1e-4, 1e-3, 1e-2]), "batch": tune.choice([8, 16, 32]),
             "act": tune.choice(["relu", "gelu"])}
    s = MultiFidelityTPE(time_attr="t", levels=LEVELS, stops_early=True, seed=0, space_size=18)
    s.set_search_properties("loss", "min", space)
    first = run(s, 12)
    s.save(str(tmp_path / "mftpe.pkl"))
    restored = MultiFidelityTPE(time_attr="t", levels=LEVELS, stops_early=True, seed=0)
    restored.restore(str(tmp_path / "mftpe.pkl"))  # `tuner resume` knows what ran
    rest = run(restored, 7, start=12)
    configs = first + rest[:-1]
    assert len({repr(c) for c in configs}) == 18 and rest[-1] == Searcher.FINISHED
    continuous = searcher()  # lr is a log range: the space is infinite and draws are never compared
    assert not continuous.tried
    assert len({repr(c) for c in run(continuous, 30)}) == 30 and not continuous.tried


def eight_trials_at(s: MultiFidelityTPE, t: float) -> None:
    """Eight trials x0..x7 of spread configs report losses 0..7 at fidelity ``t``."""
    for i in range(8):
        s.configs.setdefault(f"x{i}", np.full(3, i / 8))
        s.on_trial_result(f"x{i}", {"t": t, "loss": float(i)})


def test_random_proposals_join_the_hedge_pool_only_while_the_model_is_on_full_length_results(tmp_path):
    from tuner._util.rungs import HEDGE_TRIALS

    s = searcher()
    s.random_fraction = 1.0  # every proposal at random, to see which ones join the pool
    s.suggest("early")  # no model yet
    eight_trials_at(s, 1)
    assert s.model_rung() == 0
    s.suggest("low")  # modelling on the first rung: the sweep's low rungs are not yet judged by the full trial
    eight_trials_at(s, 9)
    s.configs["cut"] = np.full(3, 0.2)  # one trial stopped early: the sweep is multi-fidelity
    s.on_trial_complete("cut", {"t": 1, "loss": 9.0})
    assert s.model_rung() == 2
    s.suggest("h1")
    assert s.hedge == {"h1"} and "h1" in HEDGE_TRIALS and not {"early", "low"} & HEDGE_TRIALS
    s.save(str(tmp_path / "mftpe.pkl"))
    HEDGE_TRIALS.discard("h1")  # a new driver process: `tuner resume`
    restored = searcher()
    restored.restore(str(tmp_path / "mftpe.pkl"))
    assert restored.hedge == {"h1"} and "h1" in HEDGE_TRIALS


def recorder(sets: list) -> object:
    """A stand-in for _best_candidate that records its good set, bad set and bandwidth factor."""
    return lambda good, bad, widen=1.0: sets.append((good, bad, widen)) or np.full(3, 0.5)


def test_below_the_top_rung_it_models_across_rungs_ranking_trials_by_how_far_they_got(monkeypatch):
    s = searcher()
    s.random_fraction = 0.0
    sets = []
    monkeypatch.setattr(s, "_best_candidate", recorder(sets))
    s.suggest("first")  # fewer than STARTUP_TRIALS trials so far: at random
    assert not sets
    for i in range(12):  # stopped at the first rung, the best of them with loss 0
        s.configs[f"low{i}"] = np.full(3, i / 12)
        s.on_trial_complete(f"low{i}", {"t": 1, "loss": float(i)})
    for i in range(3):  # went on to the second rung, with worse losses than low0
        s.configs[f"mid{i}"] = np.full(3, 0.9)
        s.on_trial_result(f"mid{i}", {"t": 1, "loss": 5.0})
        s.on_trial_complete(f"mid{i}", {"t": 3, "loss": 10.0 + i})
    s.live.add("first")
    s.suggest("next")
    good, bad, widen = sets[-1]
    assert widen == BANDWIDTH_FACTOR > 1  # BOHB's wider draw around a good set of a few trials
    assert good == ["mid0"]  # ceil(sqrt(15) / 4) = 1: the best of those that got furthest, not low0
    assert sorted(bad) == sorted([f"low{i}" for i in range(12)] + ["mid1", "mid2", "first"])  # "first" runs: the liar


def test_a_trial_is_never_good_on_its_value_at_a_rung_whose_ranking_mispredicts(monkeypatch):
    s = searcher()
    sets = []
    monkeypatch.setattr(s, "_best_candidate", recorder(sets))
    for i in range(7):  # the first rung's ranking is the reverse of the second's
        s.configs[f"x{i}"] = np.full(3, i / 8)
        s.on_trial_result(f"x{i}", {"t": 1, "loss": float(i)})
        s.on_trial_complete(f"x{i}", {"t": 3, "loss": float(-i)})
    for i in range(800):  # a large sweep: its good set, ceil(sqrt(807) / 4) = 8, reaches below the second rung
        s.configs[f"y{i}"] = np.full(3, 0.5)
        s.on_trial_complete(f"y{i}", {"t": 1, "loss": -100.0})
    assert not s.records.reliable(0)
    s.suggest("next")
    good, _, _ = sets[-1]
    assert good == [f"x{i}" for i in range(6, -1, -1)]  # no y: their first-rung values say nothing


def test_on_full_length_results_it_is_bohbs_model_with_the_liar_and_the_cut_trials_as_bad(monkeypatch):
    s = searcher()
    s.random_fraction = 0.0
    sets = []
    monkeypatch.setattr(s, "_best_candidate", recorder(sets))
    eight_trials_at(s, 9)
    s.configs["cut"] = np.full(3, 0.2)
    s.on_trial_complete("cut", {"t": 1, "loss": -1.0})
    s.live.add("running")
    s.configs["running"] = np.full(3, 0.3)
    assert s.model_rung() == 2
    s.suggest("next")
    good, bad, widen = sets[-1]
    assert widen == 1.0  # drawn as it is on full-length results
    assert good == [f"x{i}" for i in range(4)]  # max(d + 1, 15%) of 8
    assert bad == [f"x{i}" for i in range(4, 8)] + ["running", "cut"]


def test_while_no_trial_was_stopped_early_it_is_tpe_with_optunas_good_set_and_no_random_proposals(monkeypatch):
    """One fidelity (an objective that reports once, or fifo): every result is full-length and none was selected by
    a cut; BOHB's d + 1 good configs and third of random proposals are for results that cuts selected."""
    s = searcher()
    s.random_fraction = 1.0  # would make every proposal on full-length results random, on many fidelities
    sets = []
    monkeypatch.setattr(s, "_best_candidate", recorder(sets))
    for i in range(20):  # each reports once, below the first rung, and ends on its own
        s.configs[f"x{i}"] = np.full(3, i / 20)
        s.on_trial_result(f"x{i}", {"t": 0.5, "loss": float(i)})
        s.on_trial_complete(f"x{i}", {"t": 0.5, "loss": float(i)})
    s.live.add("running")
    s.configs["running"] = np.full(3, 0.3)
    s.suggest("next")
    good, bad, widen = sets[-1]
    assert good == ["x0", "x1"] and bad == [f"x{i}" for i in range(2, 20)] + ["running"] and widen == 1.0
    assert not s.hedge  # ceil(0.1 n) good, the liar, nothing at random
    s.configs["cut"] = np.full(3, 0.9)  # a trial stopped at the first rung: now the cuts select results
    s.on_trial_result("cut", {"t": 1, "loss": 50.0})
    s.on_trial_complete("cut", {"t": 3, "loss": 40.0})
    s.suggest("then")
    assert s.hedge == {"then"}


def test_an_objective_that_reports_once_is_learnt_from():
    """It reports below the first rung and ends: each trial is a full-length result (before, none was recorded and
    the default searched at random)."""
    s = searcher(seed=1)
    losses = []
    for i in range(40):
        config = s.suggest(f"t{i}")
        losses.append(loss(config))
        s.on_trial_result(f"t{i}", {"training_iteration": 1, "t": 0.5, "loss": losses[-1]})
        s.on_trial_complete(f"t{i}", {"training_iteration": 1, "t": 0.5, "loss": losses[-1]})
    assert len(s.records.values[-1]) == 40 and not any(s.records.values[:-1])
    assert np.median(losses[25:]) < np.median(losses[:10]) / 4
