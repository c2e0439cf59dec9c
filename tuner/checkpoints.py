"""Which checkpoints a sweep keeps: one policy, `plan`, applied while the sweep runs (`CheckpointGC`, a Tune callback)
and at its end (`prune`).

A live trial keeps its latest checkpoint and its best. An ended trial keeps its best and latest if it ranks among the
sweep's best ``keep_best`` trials (every ended trial does when ``keep_best`` is None), else nothing. Under
``max_total_gb`` ended trials shed more, worst first, but never the sweep's best checkpoint.

Deleting while trials run races two readers of older checkpoints, so these are kept as well:

- Tune's experiment-state snapshots (what `tuner resume` restores) name each trial's latest checkpoint when they are
  taken: a checkpoint superseded less than ``grace_s`` ago, and the latest of a trial ended less than ``grace_s`` ago,
  may still be named by the newest snapshot.
- PBT and PB2 clone a donor's checkpoint, which may be older than the donor's latest: every checkpoint the scheduler
  may still restore from (`tuner._pbt.donor_checkpoints`) is kept, and so is each live trial's latest as Tune sees it
  (an exploited trial's is its donor's).

Only checkpoints on a local (or mounted) filesystem are collected; those on remote storage are kept.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeGuard

import pyarrow.fs
from ray.tune import Callback

from tuner.callbacks import best_effort
from tuner.distributed import POINTER, resolve_checkpoint

log = logging.getLogger(__name__)

Mode = Literal["min", "max"]
ENDED = ("TERMINATED", "ERROR")  # Tune's Trial.status of a trial that will not run again


@dataclass(frozen=True)
class Saved:
    """One checkpoint, as the policy sees it."""

    trial_id: str
    path: Path
    score: float | None = None  # the metric of the result it was saved with
    size: int = 0  # bytes; a sharded trial's pointer counts its Ray Train checkpoint
    superseded_at: float | None = None  # when its trial's next checkpoint arrived; None: the trial's latest
    live: bool = False  # its trial runs, is paused or pending (or ended less than grace_s ago)
    needed: bool = False  # a live trial restores from it, or a PBT/PB2 scheduler may clone it
    trial_value: float | None = None  # the best metric its trial reported, which ranks trials (None: its best score)


class Plan(NamedTuple):
    delete: list[Path]
    over_limit_bytes: int  # how far what must be kept exceeds max_total_bytes


class Pruned(NamedTuple):
    deleted: int
    freed_bytes: int
    over_limit_bytes: int


def plan(checkpoints: Sequence[Saved], *, mode: Mode, keep_best: int | None = None,
         max_total_bytes: int | None = None, now: float, grace_s: float = 30.0) -> Plan:
    """The checkpoints to delete (the module docstring gives the rules), and by how many bytes the rest still exceeds
    ``max_total_bytes``."""
    if keep_best is not None and keep_best < 0:
        raise ValueError(f"keep_best must be >= 0 or None, got {keep_best}")
    trials = _by_trial(checkpoints)
    ranked = _ranked(trials, mode)
    best = {tid: _best(cks, mode) for tid, cks in trials.items()}
    top = set(ranked if keep_best is None else ranked[:keep_best])
    keep: set[Path] = set()
    for tid, cks in trials.items():
        keep |= {c.path for c in cks if c.needed}
        if _is_live(cks):
            keep |= best[tid] | _latest(cks) | {c.path for c in cks if _recent(c, now, grace_s)}
        elif tid in top:
            keep |= best[tid] | _latest(cks)
    over = 0 if max_total_bytes is None else _shed(keep, trials, ranked, best, max_total_bytes)
    return Plan(list(dict.fromkeys(c.path for c in checkpoints if c.path not in keep)), over)


def _by_trial(checkpoints: Iterable[Saved]) -> dict[str, list[Saved]]:
    trials: dict[str, list[Saved]] = {}
    for c in checkpoints:
        trials.setdefault(c.trial_id, []).append(c)
    return trials


def _finite(v: float | None) -> TypeGuard[float]:
    return v is not None and math.isfinite(v)


def _key(v: float, mode: Mode) -> float:
    """Smaller is better."""
    return v if mode == "min" else -v


def _best(cks: list[Saved], mode: Mode) -> set[Path]:
    """The trial's best-scored checkpoint (every one of them on a tie)."""
    scored = [(_key(c.score, mode), c.path) for c in cks if _finite(c.score)]
    top = min((k for k, _ in scored), default=None)
    return {p for k, p in scored if k == top}


def _value(cks: list[Saved], mode: Mode) -> float | None:
    values = [v for c in cks if _finite(v := c.trial_value)] or [v for c in cks if _finite(v := c.score)]
    return min(values, key=lambda v: _key(v, mode), default=None)


def _ranked(trials: dict[str, list[Saved]], mode: Mode) -> list[str]:
    """Trial ids, best first; trials without a score last."""
    values = {tid: _value(cks, mode) for tid, cks in trials.items()}
    return sorted(trials, key=lambda tid: (values[tid] is None, _key(values[tid] or 0.0, mode)))


def _latest(cks: list[Saved]) -> set[Path]:
    return {c.path for c in cks if c.superseded_at is None}


def _is_live(cks: list[Saved]) -> bool:
    return any(c.live for c in cks)


def _recent(c: Saved, now: float, grace_s: float) -> bool:
    return c.superseded_at is not None and now - c.superseded_at < grace_s


def _shed(keep: set[Path], trials: dict[str, list[Saved]], ranked: list[str], best: dict[str, set[Path]],
          max_total_bytes: int) -> int:
    """Drop from ``keep`` until it fits: ended trials' latest-but-not-best checkpoints, then their best ones, each from
    the worst-ranked trial up. Returns the bytes still over."""
    sizes = {c.path: c.size for cks in trials.values() for c in cks}
    total = sum(sizes[p] for p in keep)
    protected = {c.path for cks in trials.values() for c in cks if c.needed or c.live}
    protected |= best[ranked[0]] if ranked else set()  # the sweep's best checkpoint
    ended = [tid for tid in reversed(ranked) if not _is_live(trials[tid])]
    order = ([p for tid in ended for p in sorted(_latest(trials[tid]) - best[tid])]
             + [p for tid in ended for p in sorted(best[tid])])
    for p in order:
        if total <= max_total_bytes:
            break
        if p in keep and p not in protected:
            keep.discard(p)
            total -= sizes[p]
    return max(0, total - max_total_bytes)


# --- on disk ----------------------------------------------------------------------------------------------------------

class _Disk(NamedTuple):
    size: int
    target: str | None  # a sharded trial's Ray Train checkpoint, deleted with its pointer


def _measure(path: Path) -> _Disk:
    target = _train_target(path)
    return _Disk(_tree_size(path) + (_tree_size(Path(target)) if target else 0), target)


def _train_target(path: Path) -> str | None:
    if not (path / POINTER).is_file():
        return None
    try:
        return os.path.normpath(resolve_checkpoint(path))
    except (OSError, ValueError, KeyError) as e:
        log.warning("checkpoint %s: unreadable %s (%s); its Ray Train checkpoint is kept", path, POINTER, e)
        return None


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # a file gone meanwhile
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def _remove(path: Path, target: str | None, kept_targets: set[str]) -> None:
    if target and target not in kept_targets:
        shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def _bytes(gb: float | None) -> int | None:
    return None if gb is None else int(gb * 1e9)


# --- at the end of a sweep --------------------------------------------------------------------------------------------

def prune(trials: list[dict[str, Any]], *, mode: Mode | None = None, keep_best: int | None = None,
          max_total_gb: float | None = None) -> Pruned:
    """Apply `plan` to the checkpoints of these ended trials (summary.json's: ``trial_id``, ``path``, ``value``,
    ``checkpoint`` = the best one); a sharded trial's Ray Train checkpoints go with their pointers. ``mode`` ranks
    the trials, needed with ``keep_best`` or ``max_total_gb``. Returns how many checkpoints were deleted, the bytes
    freed, and by how many bytes what is left still exceeds ``max_total_gb``."""
    if mode is None and (keep_best is not None or max_total_gb is not None):
        raise ValueError("prune ranks trials when keep_best or max_total_gb is set: pass mode")
    disks: dict[Path, _Disk] = {}
    records = [c for t in trials for c in _on_disk(t, disks)]
    p = plan(records, mode=mode or "min", keep_best=keep_best, max_total_bytes=_bytes(max_total_gb),
             now=time.time(), grace_s=0.0)
    doomed = set(p.delete)
    kept_targets = {t for c in records if c.path not in doomed and (t := disks[c.path].target)}
    for path in p.delete:
        _remove(path, disks[path].target, kept_targets)
    return Pruned(len(p.delete), sum(disks[path].size for path in p.delete), p.over_limit_bytes)


def _on_disk(trial: dict[str, Any], disks: dict[Path, _Disk]) -> list[Saved]:
    found = sorted(Path(trial["path"]).glob("checkpoint_*"))  # Tune's names sort by index
    best = Path(trial["checkpoint"]).name if trial.get("checkpoint") else None
    out = []
    for c in found:
        disks[c] = _measure(c)
        out.append(Saved(trial["trial_id"], c, score=trial.get("value") if c.name == best else None,
                         size=disks[c].size, superseded_at=None if c == found[-1] else 0.0,
                         trial_value=trial.get("value")))
    return out


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
        self.keep_best, self.max_total_bytes = keep_best, _bytes(max_total_gb)
        self.scheduler, self.grace_s = scheduler, grace_s
        self._checkpoints: dict[str, list[_Record]] = {}  # per trial, oldest first
        self._scores: dict[str, float | None] = {}  # each trial's last result's metric: its next checkpoint's score
        self._values: dict[str, float] = {}  # the best metric each trial reported
        self._ended: dict[str, float] = {}  # when each trial completed or failed
        self._disks: dict[str, _Disk] = {}  # checkpoints are immutable: measured once
        self._over = False

    @_guarded
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        score = _number(result.get(self.metric))
        self._scores[trial.trial_id] = score
        best = self._values.get(trial.trial_id)
        if _finite(score) and (best is None or _key(score, self.mode) < _key(best, self.mode)):
            self._values[trial.trial_id] = score

    @_guarded
    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        path = _local_path(checkpoint)
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
            _remove(path, self._disks[str(path)].target, kept_targets)
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

    def _disk(self, path: str) -> _Disk:
        if path not in self._disks:
            self._disks[path] = _measure(Path(path))
        return self._disks[path]

    def _is_live(self, trial_id: str, trial: Any, now: float) -> bool:
        ended_at = self._ended.get(trial_id)
        if ended_at is not None:
            return now - ended_at < self.grace_s
        return trial is None or trial.status not in ENDED  # a trial it cannot see is assumed live

    def _needed(self, trials: list) -> set[str]:
        from tuner._pbt import donor_checkpoints

        paths = {p for t in trials if t.status not in ENDED and t.trial_id not in self._ended
                 if (p := _local_path(t.checkpoint))}
        return paths | {os.path.normpath(p) for p in donor_checkpoints(self.scheduler)}

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


def _local_path(checkpoint: Any) -> str | None:
    if checkpoint is None or not isinstance(getattr(checkpoint, "filesystem", None), pyarrow.fs.LocalFileSystem):
        return None
    return os.path.normpath(checkpoint.path)


def _number(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
