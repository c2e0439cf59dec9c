"""tuner's PBT/PB2 guards: only checkpointed trials take part in exploit, none at the end of the budget, and
perturbed values stay inside the search space."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.pbt import _PBTTrialState

from tuner.schedulers.factories import ClipToSpace
from tuner.schedulers.pbt import CheckpointedPB2, CheckpointedPBT


class FakeTrial(SimpleNamespace):
    def is_finished(self) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)


def population(cls, scores: list[float], checkpointed: list[bool], scored_with_checkpoint: list[bool]):
    kwargs = {"hyperparam_bounds" if cls is CheckpointedPB2 else "hyperparam_mutations": {"x": [0.0, 1.0]}}
    scheduler = cls(time_attr="training_iteration", max_t=10, metric="loss", mode="min", quantile_fraction=0.5,
                    **kwargs)
    trials = []
    for i, (score, has, scored) in enumerate(zip(scores, checkpointed, scored_with_checkpoint, strict=True)):
        trial = FakeTrial(trial_id=str(i), checkpoint=object() if has else None, experiment_tag=str(i))
        state = _PBTTrialState(trial)
        state.last_score = -score  # PBT keeps mode-adjusted scores: higher is better
        state.last_result = {"should_checkpoint": scored}
        scheduler._trial_state[trial] = state
        trials.append(trial)
    return scheduler, trials


@pytest.mark.parametrize("cls", [CheckpointedPBT, CheckpointedPB2])
def test_trials_without_a_checkpoint_are_neither_exploited_nor_donors(cls):
    # Losses: trial 0 is best, 3 worst. Trial 0 never checkpointed; trial 3 neither.
    scheduler, trials = population(cls, [0.1, 0.2, 0.3, 0.4], [False, True, True, False], [False, False, True, False])
    lower, upper = scheduler._quantiles()
    assert trials[0] not in upper and trials[3] not in lower
    assert upper == [trials[1]] and lower == [trials[2]]  # trial 2's scored result carried its checkpoint


def test_everyone_checkpointed_is_plain_pbt():
    scheduler, trials = population(CheckpointedPBT, [0.1, 0.2, 0.3, 0.4], [True] * 4, [True] * 4)
    lower, upper = scheduler._quantiles()
    assert set(upper) == {trials[0], trials[1]} and set(lower) == {trials[2], trials[3]}


def test_no_perturbation_at_the_end_of_the_budget():
    scheduler, trials = population(CheckpointedPBT, [0.1, 0.2], [True, True], [True, True])
    decision = scheduler.on_trial_result(None, trials[1], {"training_iteration": 10, "loss": 0.2})
    assert decision == TrialScheduler.CONTINUE


def test_perturbed_values_are_clipped_into_the_space():
    clip = ClipToSpace({"model.dropout": (0.0, 0.2), "train.batch_size": (8, 32)}, nested=True)
    config = clip({"model": {"dropout": 0.24}, "train": {"batch_size": 38, "lr": 5.0}})
    assert config == {"model": {"dropout": 0.2}, "train": {"batch_size": 32, "lr": 5.0}}
    assert isinstance(config["train"]["batch_size"], int)
    assert ClipToSpace({"x": (0.0, 1.0)}, nested=False)({"x": -0.3}) == {"x": 0.0}


class PausingController:
    """Ray's own pause path (TuneController.pause_trial down to _schedule_trial_stop) around a live trial actor."""

    from ray.tune.execution.tune_controller import TuneController as _Real

    pause_trial = _Real.pause_trial
    _schedule_trial_pause = _Real._schedule_trial_pause
    _schedule_trial_stop = _Real._schedule_trial_stop

    def __init__(self, trials):
        self.search_alg = None
        self._cached_trial_decisions: dict = {}
        self._trial_to_actor = {t: object() for t in trials}
        self._actor_manager = SimpleNamespace(clear_actor_task_futures=lambda tracked_actor: None)

    def _mark_trial_to_checkpoint(self, trial) -> None:
        pass

    def _maybe_cache_trial_actor(self, trial) -> bool:
        return True

    def _set_trial_status(self, trial, status) -> None:
        trial.status = status


def test_an_exploit_while_the_trial_saves_for_its_pause_leaves_no_stop_behind(tmp_path):
    """(PB2 shares the exploit; its explore step needs a fitted GP, so PBT stands for both.)"""
    from ray.train import Checkpoint
    from ray.tune.experiment import Trial

    scheduler = CheckpointedPBT(time_attr="training_iteration", max_t=10, metric="loss", mode="min",
                                quantile_fraction=0.5, synch=True, log_config=False,
                                hyperparam_mutations={"x": [0.0, 1.0]})
    trials = [Trial("f", config={"x": x}, stub=True) for x in (0.2, 0.9)]
    controller = PausingController(trials)
    for trial, loss in zip(trials, (0.1, 0.9), strict=True):
        scheduler.on_trial_add(controller, trial)
        trial.status = Trial.RUNNING
        state = scheduler._trial_state[trial]
        state.last_score, state.last_result, state.last_train_time = -loss, {"loss": loss, "x": trial.config["x"]}, 5
    donor, exploited = trials
    scheduler._trial_state[donor].last_checkpoint = Checkpoint.from_directory(str(tmp_path))
    # The other trial told it to PAUSE; Ray saves before it pauses, and the save is still in flight.
    exploited.temporary_state.saving_to = object()
    controller._cached_trial_decisions[exploited.trial_id] = TrialScheduler.PAUSE

    scheduler._exploit(controller, exploited, donor)

    assert exploited.status == Trial.PAUSED
    assert exploited.trial_id not in controller._cached_trial_decisions  # else it stops at its next report
    assert exploited.checkpoint.path == str(tmp_path)
