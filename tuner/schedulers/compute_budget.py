"""The sweep's compute budget (the spec's ``budget``): what its trials have spent, and the scheduler that ends the
sweep when a limit is spent.

A trial's compute is its resources (every worker's CPUs and GPUs) x the time it trained: the sum of its results'
``time_this_iter_s``. The wall clock runs while a driver runs the sweep. The ledger is saved beside the experiment
(``budget.json``) at every result, so a resumed sweep goes on counting where the dead driver stopped.

Once a limit is spent, ``ComputeBudgetScheduler`` starts no trial (the searcher is finished, waiting trials are stopped
unstarted) and stops each running trial at its next result, which carries its checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from tuner._util.storage import Bucket
from tuner.spec import Spec

LEDGER_FILE = "budget.json"
UPLOAD_EVERY_S = 10.0
log = logging.getLogger(__name__)


class Ledger:
    """Compute spent by a sweep against its limits (None: no limit)."""

    def __init__(self, path: str | Path, *, cpu_hours: float | None = None, gpu_hours: float | None = None,
                 wall_clock_s: float | None = None, cpus_per_trial: float = 0.0, gpus_per_trial: float = 0.0,
                 bucket: Bucket | None = None):
        self.path = Path(path)
        self.bucket = bucket  # a sweep in a bucket: the ledger is copied there (at most every UPLOAD_EVERY_S)
        self._uploaded = -math.inf
        self.limits = {"cpu_hours": cpu_hours, "gpu_hours": gpu_hours, "wall_clock_s": wall_clock_s}
        self.cpus_per_trial, self.gpus_per_trial = cpus_per_trial, gpus_per_trial
        self.trial_seconds: dict[str, float] = {}
        self.wall_before_s = 0.0
        self.ended_by: str | None = None
        self._last: dict[str, tuple[Any, Any]] = {}
        self._load()
        self._started = time.monotonic()

    @classmethod
    def for_spec(cls, spec: Spec) -> Ledger:
        r, b = spec.resources, spec.budget
        return cls(spec.sweep_dir / LEDGER_FILE, cpu_hours=b.cpu_hours, gpu_hours=b.gpu_hours,
                   wall_clock_s=b.wall_clock, cpus_per_trial=r.workers_per_trial * r.cpus_per_worker,
                   gpus_per_trial=r.workers_per_trial * r.gpus_per_worker, bucket=spec.bucket)

    # Tune pickles the scheduler with the experiment; a restored ledger reads what was spent from its file.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "limits": self.limits, "cpus_per_trial": self.cpus_per_trial,
                "gpus_per_trial": self.gpus_per_trial, "bucket": self.bucket}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], cpu_hours=state["limits"]["cpu_hours"],  # type: ignore[misc]
                      gpu_hours=state["limits"]["gpu_hours"], wall_clock_s=state["limits"]["wall_clock_s"],
                      cpus_per_trial=state["cpus_per_trial"], gpus_per_trial=state["gpus_per_trial"],
                      bucket=state.get("bucket"))

    def _load(self) -> None:
        if self.bucket is not None and not self.path.is_file():  # resumed on another machine: the bucket's copy
            try:
                self.bucket.download(LEDGER_FILE, self.path)
            except OSError as e:
                log.warning("could not read the budget ledger from %s: %s", self.bucket.uri, e)
        if self.path.is_file():
            saved = json.loads(self.path.read_text())
            self.trial_seconds = {k: float(v) for k, v in saved.get("trial_seconds", {}).items()}
            self.wall_before_s = float(saved.get("spent", {}).get("wall_clock_s") or 0.0)
            self.ended_by = saved.get("ended_by")

    def charge(self, trial_id: str, result: dict[str, Any]) -> None:
        """Count a result's training time once (Tune hands a trial's last result over again when it completes)."""
        key = (result.get("training_iteration"), result.get("time_total_s"))
        if self._last.get(trial_id) == key:
            return
        self._last[trial_id] = key
        seconds = float(result.get("time_this_iter_s") or 0.0)
        self.trial_seconds[trial_id] = self.trial_seconds.get(trial_id, 0.0) + seconds
        self.save()

    def spent(self) -> dict[str, float]:
        trial_s = sum(self.trial_seconds.values())
        return {"cpu_hours": trial_s * self.cpus_per_trial / 3600, "gpu_hours": trial_s * self.gpus_per_trial / 3600,
                "wall_clock_s": self.wall_before_s + time.monotonic() - self._started}

    def exhausted(self) -> str | None:
        """The first limit spent (its name), or None."""
        if self.ended_by is None:
            spent = self.spent()
            self.ended_by = next((k for k, limit in self.limits.items() if limit is not None and spent[k] >= limit),
                                 None)
            if self.ended_by is not None:
                log.warning("the sweep's budget is spent (%s: %.4g of %.4g): no trial starts, running ones stop "
                            "at their next checkpoint", self.ended_by, spent[self.ended_by], self.limits[self.ended_by])
                self.save()
        return self.ended_by

    def report(self) -> dict[str, Any]:
        spent = self.spent()
        return {"limits": {k: v for k, v in self.limits.items() if v is not None},
                "spent": {k: round(v, 6) for k, v in spent.items()}, "ended_by": self.ended_by,
                "trial_seconds": {k: round(v, 3) for k, v in self.trial_seconds.items()}}

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.report(), indent=1))
            tmp.replace(self.path)
        except OSError as e:
            log.warning("could not save the budget ledger %s: %s", self.path, e)
            return
        if self.bucket is not None and (self.ended_by or time.monotonic() - self._uploaded >= UPLOAD_EVERY_S):
            try:
                self.bucket.upload(self.path, LEDGER_FILE)
                self._uploaded = time.monotonic()
            except OSError as e:
                log.warning("could not copy the budget ledger to %s: %s", self.bucket.uri, e)


def load_report(sweep_dir: Path) -> dict[str, Any] | None:
    path = sweep_dir / LEDGER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class ComputeBudgetScheduler(TrialScheduler):
    """Wraps the sweep's scheduler: it decides as before until the ledger says the budget is spent."""

    def __init__(self, inner: TrialScheduler, ledger: Ledger):
        self.inner, self.ledger = inner, ledger

    @property
    def metric(self) -> Any:
        return self.inner.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.inner.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self.ledger.charge(trial.trial_id, result)
        if self.ledger.exhausted():
            return TrialScheduler.STOP  # this result carried the trial's checkpoint
        return self.inner.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.ledger.charge(trial.trial_id, result)
        self.inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self.inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        if not self.ledger.exhausted():
            return self.inner.choose_trial_to_run(tune_controller)
        # No trial starts: no new ones, and those waiting (pending, or paused by PBT or HyperBand) end unstarted.
        tune_controller.search_alg.set_finished()
        for t in tune_controller.get_trials():
            if t.status in (Trial.PENDING, Trial.PAUSED):
                tune_controller.stop_trial(t)
        return None

    def debug_string(self) -> str:
        return self.inner.debug_string()

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.inner.restore(checkpoint_path)

    def __getattr__(self, name: str) -> Any:  # what else Tune or tuner asks of the scheduler (PBT's trial states)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
