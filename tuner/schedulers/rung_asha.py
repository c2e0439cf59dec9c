"""rung-asha: asynchronous successive halving over fixed rungs, with no free pass and a guard on each rung.

Ray's ASHA judges a trial once, when it first reaches a rung, against the values recorded there so far: the first
trial to reach an empty rung always continues, so a sweep's early trials run long unscreened. Here a trial working
towards the next rung stays judged at the rung it last reached, at every report: it continues while it ranks in the
top ``max(1, n // eta)`` of the ``n`` trials recorded at that rung (the promotion rule of asynchronous successive
halving, Li et al. 2020), so an early trial that later ones outrank at its rung stops at its next report. A trial is
never judged at a rung whose ranking the sweep's own trials show does not predict a higher rung's
(``tuner._util.rungs.RungRecords.reliable``): such a rung is passed freely.

Stopped trials keep their values at the rungs they reached: they are the competition the later trials face. A trial
in the hedge pool (``tuner._util.rungs.HEDGE_TRIALS``: the mftpe searcher's random proposals once it models on
full-length results) faces only the other hedge trials below the last cut, while every other trial faces all of them:
the hedge runs as random search with ASHA would, however far the model's proposals outrank it at the low rungs. At the
last cut, the one that decides which trials run to the end, it faces everyone: a rung that close to the full trial
ranks late leaders fairly, and full-length runs of random configs that the model's outrank there would cost the
sweep a good part of its compute.
"""

from __future__ import annotations

import pickle
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from tuner._util.objective import Objective, finite
from tuner._util.rungs import HEDGE_TRIALS, RungRecords


class RungASHA(FIFOScheduler):
    def __init__(self, time_attr: str, levels: tuple[float, ...], reduction_factor: float = 3.0,
                 metric: str | None = None, mode: str | None = None):
        super().__init__()
        self._time_attr, self._eta = time_attr, reduction_factor
        self._metric, self._mode = metric, mode
        self.records = RungRecords(levels)
        self._stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        if not self._metric or self._mode not in ("min", "max"):
            raise ValueError("RungASHA needs a metric and a mode (min or max), from its constructor or TuneConfig")

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        loss = self._loss(result)
        if loss is None:
            return TrialScheduler.CONTINUE
        self.records.record(trial.trial_id, result[self._time_attr], loss)
        rung = self.records.rung_reached(trial.trial_id)
        if 0 <= rung < self.records.top and self.records.reliable(rung) and not self.promotable(trial.trial_id, rung):
            self._stopped += 1
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        loss = self._loss(result or {})
        if loss is not None:
            self.records.record(trial.trial_id, result[self._time_attr], loss)

    def promotable(self, trial_id: str, rung: int) -> bool:
        """The trial ranks in the top max(1, n // eta) of the n trials recorded at the rung (ties in its favour); a
        hedge trial below the last cut, of the n hedge trials there."""
        values = self.records.values[rung]
        if trial_id in HEDGE_TRIALS and rung < self.records.top - 1:
            values = {t: v for t, v in values.items() if t in HEDGE_TRIALS}
        mine = values[trial_id]
        better = sum(v < mine for t, v in values.items() if t != trial_id)
        return better < max(1, int(len(values) // self._eta))

    def _loss(self, result: dict) -> float | None:
        if self._time_attr not in result or not finite(result.get(self._metric)):
            return None
        return Objective(self._metric or "", self._mode or "min").loss(float(result[self._metric]))

    def debug_string(self) -> str:
        counts = ", ".join(f"{level:g}: {len(v)}" for level, v in zip(self.records.levels, self.records.values,
                                                                       strict=True))
        return f"RungASHA: {self._stopped} stopped; trials per rung {counts}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
