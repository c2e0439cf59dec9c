"""PBT and PB2 that exploit only trials holding a checkpoint of the result they are scored by, and never at the
end of the budget.

Ray issue #27170: a trial that never checkpointed can be exploited (its clone restarts from scratch) or paused and
restarted from scratch. Here such trials stay out of both quantiles until their first checkpoint: they are neither
donors nor exploited. A result at ``max_t`` is the trial's last: exploiting then would clone a finished trial into
one that trains no further, so perturbation stops there.

Ray's PBT also pauses a trial at its perturbation whenever another trial waits (PAUSED or PENDING), to yield its
resources. A sharded trial's workers are not Tune's resources (Ray Train reserves them, and the sweep runs no more
sharded trials than fit at once), so yielding frees nothing and costs a new Train run: ``yield_to_waiting=False``
keeps such trials running.
"""

from __future__ import annotations

from typing import Any

from ray.train._internal.session import _FutureTrainingResult
from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2

from tuner._util import tree


def _has_checkpoint(trial: Any, state: Any) -> bool:
    # The result being scored carries its checkpoint, registered with the trial only after the scheduler has run.
    return bool((state.last_result or {}).get("should_checkpoint")) or trial.checkpoint is not None


def _checkpointed(quantiles: tuple[list, list], trial_state: dict) -> tuple[list, list]:
    lower, upper = quantiles
    return ([t for t in lower if _has_checkpoint(t, trial_state[t])],
            [t for t in upper if _has_checkpoint(t, trial_state[t])])


def donor_checkpoints(scheduler: Any) -> list[str]:
    """The paths of the checkpoints a PBT or PB2 scheduler may still clone a trial from (none for other schedulers).

    Ray 2.60 keeps, per trial, the ``last_checkpoint`` of its latest perturbation: a Checkpoint, or the
    _FutureTrainingResult of the save it asked for. An unresolved save is left out: it resolves to its trial's latest
    checkpoint, which the trial keeps anyway. A finished trial's state stays, and its checkpoint is listed too, though
    ``_quantiles`` no longer draws donors among finished trials: a trial already exploited from it names it as its own
    latest checkpoint.
    """
    if not isinstance(scheduler, PopulationBasedTraining):
        return []
    paths = []
    for state in scheduler._trial_state.values():
        checkpoint = state.last_checkpoint
        if isinstance(checkpoint, _FutureTrainingResult):
            resolved = checkpoint.resolve(block=False)
            checkpoint = resolved.checkpoint if resolved else None
        if checkpoint is not None:
            paths.append(checkpoint.path)
    return paths


class _Guarded:
    _max_t: float
    _time_attr: str
    _yield_to_waiting: bool = True

    @property
    def exploits(self) -> list[dict[str, Any]]:
        """Every exploit so far, in order: {trial, donor, at {training_iteration, <time_attr>}, config (the mutated
        values)}; the sweep store's callback records them (the sweep's lineage)."""
        if "_exploits" not in self.__dict__:
            self._exploits: list[dict[str, Any]] = []
        return self._exploits

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        saving_to_pause = trial.status == Trial.RUNNING and trial.is_saving
        super()._exploit(tune_controller, trial, trial_to_clone)  # type: ignore[misc]
        if saving_to_pause and trial.status == Trial.PAUSED:
            _drop_stale_stop(tune_controller, trial)
        last = trial_to_clone.last_result or {}
        mutated = getattr(self, "_hyperparam_mutations", None) or getattr(self, "_hyperparam_bounds", {})
        self.exploits.append({
            "trial": trial.trial_id, "donor": trial_to_clone.trial_id,
            "at": {"training_iteration": last.get("training_iteration"), self._time_attr: last.get(self._time_attr)},
            "config": {key: _lookup(trial.config, key) for key in tree.flatten(mutated, sep=".")}})

    def _quantiles(self) -> tuple[list, list]:
        return _checkpointed(super()._quantiles(), self._trial_state)  # type: ignore[misc, attr-defined]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        if decision == TrialScheduler.PAUSE and not self._yield_to_waiting and not getattr(self, "_synch", False):
            # Paused only to let a waiting trial run (synchronous PBT's wait for the others is kept); an exploited
            # trial is paused by the exploit itself (decision NOOP).
            return TrialScheduler.CONTINUE
        return decision


class CheckpointedPBT(_Guarded, PopulationBasedTraining):
    def __init__(self, *, max_t: float, yield_to_waiting: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self._max_t = max_t
        self._yield_to_waiting = yield_to_waiting


class CheckpointedPB2(_Guarded, PB2):
    def __init__(self, *, max_t: float, yield_to_waiting: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self._max_t = max_t
        self._yield_to_waiting = yield_to_waiting


def _drop_stale_stop(tune_controller: Any, trial: Any) -> None:
    """Synchronous PBT exploits a trial whose pause is still saving (the others reached the perturbation while its
    save was in flight). Ray 2.60's ``pause_trial(should_checkpoint=False)`` then queues a STOP "for after the save"
    but also drops the save's future, so the STOP stays queued and stops the trial at the first checkpointed report
    after it resumes from the donor: it ends early, as if finished. The trial is PAUSED with its new checkpoint: no
    stop is owed."""
    decisions = getattr(tune_controller, "_cached_trial_decisions", None)
    if decisions is not None and decisions.get(trial.trial_id) == TrialScheduler.STOP:
        del decisions[trial.trial_id]


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    try:
        return tree.get_path(config, dotted)
    except (KeyError, TypeError):
        return config.get(dotted)  # a flat config keyed by dotted names (custom trainables)
