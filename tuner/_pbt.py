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

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
from ray.tune.schedulers.pb2 import PB2


def _has_checkpoint(trial: Any, state: Any) -> bool:
    # The result being scored carries its checkpoint, registered with the trial only after the scheduler has run.
    return bool((state.last_result or {}).get("should_checkpoint")) or trial.checkpoint is not None


def _checkpointed(quantiles: tuple[list, list], trial_state: dict) -> tuple[list, list]:
    lower, upper = quantiles
    return ([t for t in lower if _has_checkpoint(t, trial_state[t])],
            [t for t in upper if _has_checkpoint(t, trial_state[t])])


class _Guarded:
    _max_t: float
    _time_attr: str
    _yield_to_waiting: bool = True

    def _quantiles(self) -> tuple[list, list]:
        return _checkpointed(super()._quantiles(), self._trial_state)  # type: ignore[misc, attr-defined]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self._max_t:
            return TrialScheduler.CONTINUE
        decision = super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]
        if decision == TrialScheduler.PAUSE and not self._yield_to_waiting:
            return TrialScheduler.CONTINUE  # an exploited trial is paused by the exploit itself (decision NOOP)
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
