"""A sweep's best, its leaderboard and an extension's merged summary prefer full-fidelity results: a trial cut short
never outranks one that ran its whole length, whatever its value."""

from __future__ import annotations

from tuner._util.objective import Objective
from tuner.sweep.summary import leaderboard_rows, merged


def trial(trial_id: str, value: float | None, state: str) -> dict:
    return {"trial_id": trial_id, "state": state, "value": value, "config": {"x": 1}, "checkpoint": None,
            "iterations": 3, "last_result": {"tokens": 10}}


def summary(*trials: dict) -> dict:
    return {"name": "s", "metric": "loss", "mode": "min", "time_attr": "tokens", "trials": list(trials),
            "compute": {"trial_seconds": 1.0}, "best": None}


def test_a_stopped_trials_lower_value_never_beats_a_completed_one():
    stopped, done, worse = trial("a", 0.1, "stopped"), trial("b", 0.5, "completed"), trial("c", 0.7, "completed")
    ranked = [r["trial_id"] for r in leaderboard_rows(summary(stopped, worse, done, trial("d", None, "error")))]
    assert ranked == ["b", "c", "a", "d"]
    both = merged(summary(stopped), summary(done, worse), "min")
    assert both["best"]["trial_id"] == "b"
    assert merged(summary(stopped), summary(trial("e", 0.3, "stopped")), "min")["best"]["trial_id"] == "a"


def test_objective_ranks_full_fidelity_first_in_both_modes():
    items = [("a", 0.9, False), ("b", 0.2, True), ("c", 0.5, True)]
    best = Objective("acc", "max").ranked(items, lambda i: i[1], full=lambda i: i[2])
    assert [i[0] for i in best] == ["c", "b", "a"]
    assert Objective("loss", "min").best(items, lambda i: i[1], full=lambda i: i[2])[0] == "b"
    assert Objective("loss", "min").best(items, lambda i: i[1])[0] == "b"
    assert Objective("acc", "max").best(items, lambda i: i[1])[0] == "a"  # without full: the value alone
