"""A Tune callback hook that fails costs a warning naming the callback and the hook, never the sweep."""

from __future__ import annotations

import logging

from tuner.sweep.callbacks import best_effort


class Flaky:
    url = "postgresql://user:secret@db/tuner"

    @best_effort(lambda callback: f"sweep store at {callback.url.split('@')[1]}")
    def on_trial_result(self, iteration: int, trial: str) -> None:
        raise OSError(f"disk full at {iteration} for {trial}")


def test_a_failing_hook_is_logged_and_returns(caplog):
    with caplog.at_level(logging.WARNING):
        assert Flaky().on_trial_result(3, trial="t1") is None
    assert "sweep store at db/tuner: on_trial_result failed: OSError: disk full at 3 for t1" in caplog.text
    assert Flaky.on_trial_result.__name__ == "on_trial_result"
    assert caplog.records[0].name == __name__  # the hook's module's logger
