"""rung-asha: no free pass at a rung, the promotion rule of asynchronous successive halving, and the guard that
stops cutting at a rung whose ranking does not predict a higher one's."""

from __future__ import annotations

import pytest
from ray.tune.schedulers import TrialScheduler

from tuner._util.rungs import MIN_PAIRS, RungRecords, rung_levels, spearman
from tuner.schedulers.rung_asha import RungASHA

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
LEVELS = (1.0, 3.0, 9.0, 27.0)


class FakeTrial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def scheduler(mode: str = "min") -> RungASHA:
    s = RungASHA("t", LEVELS, reduction_factor=3)
    assert s.set_search_properties("loss", mode)
    return s


def report(s: RungASHA, trial_id: str, t: float, loss: float) -> str:
    return s.on_trial_result(None, FakeTrial(trial_id), {"t": t, "loss": loss})


def test_rung_levels():
    assert rung_levels(27, 3) == (1.0, 3.0, 9.0, 27.0)
    assert rung_levels(27, 3, min_t=2) == (3.0, 9.0, 27.0)
    assert rung_levels(100, 3, grace=5) == (5.0, 15.0, 45.0, 100.0)
    assert rung_levels(10, 3, grace=10) == (10.0,)


def test_the_first_trial_at_a_rung_is_stopped_once_later_trials_outrank_it_there():
    """No free pass: the first trial to reach rung 1 continues while it is the best there, and is stopped at its
    next report once better trials have reached the rung."""
    s = scheduler()
    assert report(s, "a", 1, 0.5) == CONTINUE  # alone at the rung: the best of 1
    assert report(s, "b", 1, 0.2) == CONTINUE
    assert report(s, "a", 2, 0.45) == STOP  # b outranks it at rung 1 (top max(1, 2 // 3) = 1)
    for i, loss in enumerate((0.3, 0.4, 0.6, 0.7)):
        assert report(s, f"c{i}", 1, loss) == STOP  # worse than b, and 5 // 3 = 1
    assert report(s, "d", 1, 0.25) == CONTINUE  # 6 at the rung: the top 2 continue
    assert report(s, "b", 2, 0.19) == CONTINUE


def test_a_trial_is_judged_at_the_highest_rung_it_reached_and_mode_max_is_honoured():
    s = scheduler(mode="max")
    for i, acc in enumerate((0.9, 0.1, 0.2, 0.3, 0.4, 0.5)):
        report(s, f"t{i}", 1, acc)
    assert report(s, "t0", 3, 0.2) == CONTINUE  # best at rung 1; alone at rung 3
    assert report(s, "t5", 3, 0.95) == CONTINUE  # reaches rung 3 and outranks t0 there
    assert report(s, "t0", 4, 0.3) == STOP
    assert report(s, "t5", 27, 0.99) == CONTINUE  # at max_t nothing is judged


def test_a_rung_whose_ranking_does_not_predict_the_next_is_passed_freely():
    s = scheduler()
    n = MIN_PAIRS + 2
    for i in range(n):  # rung 1 ranks the trials in the reverse order of rung 3
        report(s, f"t{i}", 1, float(i))
        report(s, f"t{i}", 3, float(n - i))
    assert not s.records.reliable(0) and s.records.reliable(1)
    report(s, "best", 1, -1.0)
    assert report(s, "late", 1, 100.0) == CONTINUE  # the worst at an unreliable rung is not cut
    assert report(s, "late", 3, 100.0) == STOP  # rung 3 is still judged


def test_spearman_and_the_rung_guard_measure_against_the_highest_rung_with_enough_pairs():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    r = RungRecords(LEVELS)
    for i in range(MIN_PAIRS):
        r.record(f"t{i}", 27, float(i))  # a report at max_t is the trial's value at every rung
    rho, pairs, rung = r.correlation(0)
    assert (rho, pairs, rung) == (pytest.approx(1.0), MIN_PAIRS, 3)
    assert r.record("x", 3, float("nan")) == [] and r.rung_reached("x") == -1


def test_save_and_restore(tmp_path):
    s = scheduler()
    report(s, "a", 1, 0.5)
    report(s, "b", 1, 0.2)
    s.save(str(tmp_path / "s.pkl"))
    fresh = RungASHA("t", LEVELS)
    fresh.restore(str(tmp_path / "s.pkl"))
    assert report(fresh, "a", 2, 0.45) == STOP


def test_a_hedge_trial_is_judged_among_hedge_trials_below_the_last_cut_and_the_others_among_all():
    from tuner._util.rungs import HEDGE_TRIALS

    HEDGE_TRIALS.update({"h0", "h1", "h2"})
    try:
        s = scheduler()
        for i, loss in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6)):
            report(s, f"m{i}", 1, loss)  # the model's proposals, which start fast
        assert report(s, "h0", 1, 0.9) == CONTINUE  # the best hedge trial at the rung, though 7th of all 7
        assert report(s, "h1", 1, 0.8) == CONTINUE
        assert report(s, "h2", 1, 0.95) == STOP  # top 3 // 3 = 1 of the hedge trials; h1 outranks it
        assert report(s, "h0", 2, 0.9) == STOP
        assert report(s, "m6", 1, 0.85) == STOP  # a model trial faces everyone: 10 at the rung, top 3
        for i, loss in enumerate((0.1, 0.2, 0.3)):
            report(s, f"m{i}", 9, loss)  # rung 2, the last cut before the full trial
        assert report(s, "h1", 9, 0.5) == STOP  # there the hedge faces everyone: 4 at the rung, top 1
    finally:
        HEDGE_TRIALS.difference_update({"h0", "h1", "h2"})
