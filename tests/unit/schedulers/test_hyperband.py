"""HyperBand never leaves a bracket with only paused trials that nothing runs or stops (the sweep would never end:
seen with two trials at once, Tune's loop spinning for two hours)."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from tuner.schedulers.hyperband import ResumingHyperBand


class Controller:
    """What HyperBand asks of Tune's controller, as Ray 2.60's TuneController does it in stop_trial."""

    def __init__(self, scheduler):
        self.scheduler, self.trials = scheduler, []

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        if trial.status in (Trial.PENDING, Trial.PAUSED):
            self.scheduler.on_trial_remove(self, trial)
        elif trial.status == Trial.RUNNING:
            self.scheduler.on_trial_complete(self, trial, {})
        trial.set_status(Trial.TERMINATED)


def halving_bracket():
    """HyperBand over 3 iterations (reduction 3) and its bracket of 3 trials that halves at iteration 1 (the one
    before holds 2 trials that run to the end)."""
    hb = ResumingHyperBand(time_attr="training_iteration", max_t=3, reduction_factor=3, metric="loss", mode="min")
    tc = Controller(hb)
    for i in range(5):
        t = Trial("f", stub=True, trial_id=f"t{i}")
        tc.trials.append(t)
        hb.on_trial_add(tc, t)
    bracket = hb._trial_info[tc.trials[2]][0]
    assert len(bracket.current_trials()) == 3 and bracket._cumul_r == 1
    for t in tc.trials[:2]:  # the other bracket's: out of the way
        t.set_status(Trial.TERMINATED)
    return hb, tc, bracket


def report(hb, tc, trial, i, loss):
    return hb.on_trial_result(tc, trial, {"training_iteration": i, "loss": loss})


def test_a_good_trial_paused_while_its_bracket_was_halved_runs_on_and_the_bracket_ends():
    hb, tc, bracket = halving_bracket()
    best, other, last = bracket.current_trials()
    for t in (best, other, last):
        t.set_status(Trial.RUNNING)
    # Two trials at once: the best one reaches the rung first and is paused, but its pause is still being saved
    # (it is RUNNING) when the last one reaches the rung and the bracket is halved around it.
    assert report(hb, tc, best, 1, 0.1) == TrialScheduler.PAUSE
    assert report(hb, tc, other, 1, 0.5) == TrialScheduler.PAUSE
    other.set_status(Trial.PAUSED)
    report(hb, tc, last, 1, 0.9)  # halved: last is dropped from the bracket (Ray tells it CONTINUE, meant for best)
    last.set_status(Trial.TERMINATED)
    best.set_status(Trial.PAUSED)  # its pause lands now: Ray's HyperBand never runs it again
    assert bracket.current_trials() == [best] and best not in bracket.trials_to_unpause

    assert hb.choose_trial_to_run(tc) is best
    best.set_status(Trial.RUNNING)
    assert report(hb, tc, best, 2, 0.05) == TrialScheduler.CONTINUE
    assert report(hb, tc, best, 3, 0.01) == TrialScheduler.STOP  # max_t: the bracket ends


def test_a_bracket_left_paused_at_its_rung_is_processed():
    hb, tc, bracket = halving_bracket()
    a, b, c = bracket.current_trials()
    for t in (a, b, c):
        t.set_status(Trial.RUNNING)
    assert report(hb, tc, a, 1, 0.1) == TrialScheduler.PAUSE
    a.set_status(Trial.PAUSED)
    assert report(hb, tc, b, 1, 0.5) == TrialScheduler.PAUSE
    b.set_status(Trial.PAUSED)
    # The third ends without the report that would have halved the bracket (it errored, or was removed).
    bracket.cleanup_trial(c)
    c.set_status(Trial.ERROR)
    assert hb.choose_trial_to_run(tc) is a  # halved: the better one runs on, the other is stopped
    assert b.status == Trial.TERMINATED
