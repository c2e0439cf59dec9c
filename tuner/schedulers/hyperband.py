"""HyperBand that never leaves a bracket stalled with paused trials.

Ray's HyperBand processes a bracket (halves it, or ends it at ``max_t``) when a trial reports and every live trial
of the bracket has reached the rung. With trials running at once, the trial that completes the rung can be
processed while another's pause is still being saved (its status is RUNNING, so ``cleanup_full`` does not stop it,
nor is it unpaused), or a trial can end without a report that processes the bracket: the bracket is then left with
only paused trials that nothing ever runs or stops, and the sweep never ends (seen here: three trials paused at
max_t, Tune's loop spinning for two hours). Before choosing the next trial, a bracket in that state is processed
again.
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import HyperBandScheduler


class ResumingHyperBand(HyperBandScheduler):
    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        for band in self._hyperbands:
            for bracket in band:
                if bracket is not None:
                    self._unstall(tune_controller, bracket)
        return super().choose_trial_to_run(tune_controller)

    def _unstall(self, tune_controller: Any, bracket: Any) -> None:
        """A bracket with only paused trials, none of them marked to run: those short of the rung run on; if all
        reached it, the bracket is processed (halved, or ended at max_t)."""
        trials = bracket.current_trials()
        if not trials or any(t.status != Trial.PAUSED or t.is_saving or t in bracket.trials_to_unpause
                             for t in trials):
            return
        behind = [t for t in trials if bracket.continue_trial(t)]
        for t in behind:
            self._unpause_trial(tune_controller, t)
            bracket.trials_to_unpause.add(t)
        if not behind and bracket.cur_iter_done():
            self._process_bracket(tune_controller, bracket)
