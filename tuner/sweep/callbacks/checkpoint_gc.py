"""The Tune callback that applies the sweep's checkpoint policy (``tuner.sweep.checkpoint_policy``) while the sweep
runs: it records each checkpoint as it is written and each trial as it ends, and deletes what the policy lets go."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray.tune import Callback

from tuner._util.objective import Objective
from tuner.schedulers.pbt import donor_checkpoints
from tuner.sweep.callbacks import best_effort
from tuner.sweep.checkpoint_policy import ENDED, Disk, Mode, Saved, measure, plan, remove, to_bytes

log = logging.getLogger(__name__)

# --- while a sweep runs -----------------------------------------------------------------------------------------------

# Collecting garbage must never stop the sweep: a failure costs a warning, and the checkpoints stay.
_guarded = best_effort(lambda gc: "checkpoint GC")


@dataclass
class _Record:
    path: str
    score: float | None
    superseded_at: float | None = None


class CheckpointGC(Callback):
    """Applies `plan` to a sweep's checkpoints as they are written and as trials end.

    ``scheduler`` is the sweep's Tune scheduler (a PBT or PB2 one names the donor checkpoints to keep). Tune pickles
    this callback with the experiment before the sweep starts, in the same pickle as the scheduler (so a restored
    sweep's copy still shares it); a resumed sweep's copy has no record of checkpoints written before, and keeps them
    (the end-of-sweep `prune` collects them). Only what it recorded is ever deleted.
    """

    def __init__(self, metric: str, mode: Mode, keep_best: int | None = None, max_total_gb: float | None = None, *,
                 scheduler: Any = None, grace_s: float = 30.0):
        if keep_best is not None and keep_best < 0:
            raise ValueError(f"keep_best must be >= 0 or None, got {keep_best}")
        self.metric, self.mode = metric, mode
        self.keep_best, self.max_total_bytes = keep_best, to_bytes(max_total_gb)
        self.scheduler, self.grace_s = scheduler, grace_s
        self._checkpoints: dict[str, list[_Record]] = {}  # per trial, oldest first
        self._scores: dict[str, float | None] = {}  # each trial's last result's metric: its next checkpoint's score
        self._values: dict[str, float] = {}  # the best metric each trial reported
        self._ended: dict[str, float] = {}  # when each trial completed or failed
        self._disks: dict[str, Disk] = {}  # checkpoints are immutable: measured once
        self._fs: Any = None  # the bucket's filesystem, for a sweep whose storage is one (None: local)
        self._over = False

    @_guarded
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        score = _number(result.get(self.metric))
        self._scores[trial.trial_id] = score
        best = self._values.get(trial.trial_id)
        if score is not None and Objective(self.metric, self.mode).better(score, best):
            self._values[trial.trial_id] = score

    @_guarded
    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        path = self._path(checkpoint)
        # A PBT- or pause-requested save of a function trainable hands back the checkpoint it last reported.
        if path is None or any(r.path == path for recs in self._checkpoints.values() for r in recs):
            return
        now = time.time()
        records = self._checkpoints.setdefault(trial.trial_id, [])
        for r in records:
            if r.superseded_at is None:
                r.superseded_at = now
        records.append(_Record(path, self._scores.get(trial.trial_id)))
        self._collect(trials, now)

    @_guarded
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = time.time()  # its status still reads RUNNING here
        self._collect(trials, time.time())

    @_guarded
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended[trial.trial_id] = time.time()
        self._collect(trials, time.time())

    @_guarded
    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._collect(trials, time.time())

    def _collect(self, trials: list, now: float) -> None:
        records = self._records(trials, now)
        p = plan(records, mode=self.mode, keep_best=self.keep_best, max_total_bytes=self.max_total_bytes, now=now,
                 grace_s=self.grace_s)
        doomed = {str(path) for path in p.delete}
        kept_targets = {t for c in records if str(c.path) not in doomed and (t := self._disks[str(c.path)].target)}
        for path in p.delete:
            remove(path, self._disks[str(path)].target, kept_targets, self._fs)
        if p.delete:
            log.debug("checkpoint GC deleted %d checkpoints (%d bytes)", len(p.delete),
                      sum(self._disks[str(path)].size for path in p.delete))
        self._forget(doomed)
        self._warn_if_over(p.over_limit_bytes)

    def _records(self, trials: list, now: float) -> list[Saved]:
        by_id = {t.trial_id: t for t in trials}
        needed = self._needed(trials)
        out = []
        for tid, recs in self._checkpoints.items():
            live = self._is_live(tid, by_id.get(tid), now)
            for r in recs:
                disk = self._disk(r.path)
                out.append(Saved(tid, Path(r.path), score=r.score, size=disk.size, superseded_at=r.superseded_at,
                                 live=live, needed=r.path in needed, trial_value=self._values.get(tid)))
        return out

    def _disk(self, path: str) -> Disk:
        if path not in self._disks:
            self._disks[path] = measure(Path(path), self._fs)
        return self._disks[path]

    def _is_live(self, trial_id: str, trial: Any, now: float) -> bool:
        ended_at = self._ended.get(trial_id)
        if ended_at is not None:
            return now - ended_at < self.grace_s
        return trial is None or trial.status not in ENDED  # a trial it cannot see is assumed live

    def _needed(self, trials: list) -> set[str]:
        paths = {p for t in trials if t.status not in ENDED and t.trial_id not in self._ended
                 if (p := self._path(t.checkpoint))}
        return paths | {os.path.normpath(p) for p in donor_checkpoints(self.scheduler)}

    def _path(self, checkpoint: Any) -> str | None:
        """A checkpoint's path, local or in the sweep's bucket (whose filesystem is kept for deleting there)."""
        fs = getattr(checkpoint, "filesystem", None)
        if checkpoint is None or fs is None:
            return None
        if not isinstance(fs, pyarrow.fs.LocalFileSystem):
            self._fs = self._fs or fs
        return os.path.normpath(checkpoint.path)

    def _forget(self, paths: set[str]) -> None:
        for tid, recs in self._checkpoints.items():
            self._checkpoints[tid] = [r for r in recs if r.path not in paths]
        for p in paths:
            self._disks.pop(p, None)

    def _warn_if_over(self, over: int) -> None:
        if over and not self._over:
            log.warning("checkpoints exceed checkpoint.max_total_gb by %.3f GB: the rest are the sweep's best and "
                        "what running trials and PBT need", over / 1e9)
        self._over = over > 0




def _number(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
