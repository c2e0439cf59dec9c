"""Warm-starting a searcher with a finished sweep's observations (`tuner extend`).

The past configs go first in the searcher's ``points_to_evaluate``; once Tune has given the searcher its space, each
is suggested and completed with its observed value under a private trial id, before any new trial is suggested.
That replays them through the searcher's own API, so it works for every model-based searcher here (TPE, GP, Optuna)
and their state afterwards is as if those trials had just run. Random and grid search learn nothing from them.
A searcher that learns at every rung (mftpe) is given each past trial's values at the rungs it reached, as the
results it would have seen, the last one as the result that ended the trial: a trial that was stopped early then stays
an observation at the rung it reached. A past trial that reached no rung (an objective that reports once) is replayed
as a full-length result.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher


class WarmStarted(Searcher):
    def __init__(self, searcher: Searcher, values: list[float], metric: str, mode: str,
                 rungs: list[list[tuple[float, float]]] | None = None):
        super().__init__(metric=metric, mode=mode)
        self.searcher = searcher
        self.values = list(values)  # the observed metric of each of the searcher's first points, in order
        # ... and, for a searcher that learns per rung, each one's [rung, value] pairs (summary.json's "rungs")
        self.rungs = list(rungs) if rungs is not None else [[] for _ in self.values]
        self.replayed = False

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._replay()
        return ok

    def _replay(self) -> None:
        if self.replayed:
            return
        metric = self.searcher.metric or self.metric
        time_attr = getattr(self.searcher, "time_attr", None)  # (a searcher that learns per rung names it)
        for i, (value, rungs) in enumerate(zip(self.values, self.rungs, strict=True)):
            trial_id = f"warm_start_{i}"
            if self.searcher.suggest(trial_id) is None:
                break
            if time_attr and rungs:  # the last as the result that ended the trial (not seen before, as Ray has it)
                for t, v in rungs[:-1]:
                    self.searcher.on_trial_result(trial_id, {metric: v, time_attr: t})
                self.searcher.on_trial_complete(trial_id, {metric: rungs[-1][1], time_attr: rungs[-1][0]})
            else:
                self.searcher.on_trial_complete(trial_id, {metric: value})
        self.replayed = True

    def suggest(self, trial_id: str) -> dict | None:
        self._replay()
        return self.searcher.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "searcher"}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
        self.replayed = True
