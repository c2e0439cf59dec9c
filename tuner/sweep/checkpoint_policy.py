"""Which checkpoints a sweep keeps: one policy, `plan`, applied while the sweep runs (``CheckpointGC``, the Tune
callback in ``tuner.sweep.callbacks.checkpoint_gc``) and at its end (`prune`).

A live trial keeps its latest checkpoint and its best. An ended trial keeps its best and latest if it ranks among the
sweep's best ``keep_best`` trials (every ended trial does when ``keep_best`` is None), else nothing. Under
``max_total_gb`` ended trials shed more, worst first, but never the sweep's best checkpoint.

Deleting while trials run races two readers of older checkpoints, so these are kept as well:

- Tune's experiment-state snapshots (what `tuner resume` restores) name each trial's latest checkpoint when they are
  taken: a checkpoint superseded less than ``grace_s`` ago, and the latest of a trial ended less than ``grace_s`` ago,
  may still be named by the newest snapshot.
- PBT and PB2 clone a donor's checkpoint, which may be older than the donor's latest: every checkpoint the scheduler
  may still restore from (`tuner.schedulers.pbt.donor_checkpoints`) is kept, and so is each live trial's latest as
  Tune sees it (an exploited trial's is its donor's).

Checkpoints on a local (or mounted) filesystem and in a bucket (``fs``: the sweep's pyarrow filesystem) are collected
alike (in a bucket, a sharded trial's pointer is read there to find its Ray Train checkpoint).
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

from tuner._util.objective import Objective
from tuner._util.storage import fs_path
from tuner.trial.parallel import POINTER, resolve_checkpoint

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


def finite(v: float | None) -> TypeGuard[float]:
    return v is not None and math.isfinite(v)


def _best(cks: list[Saved], mode: Mode) -> set[Path]:
    """The trial's best-scored checkpoint (every one of them on a tie)."""
    scored = [(Objective("score", mode).loss(c.score), c.path) for c in cks if finite(c.score)]
    top = min((k for k, _ in scored), default=None)
    return {p for k, p in scored if k == top}


def _value(cks: list[Saved], mode: Mode) -> float | None:
    values = [v for c in cks if finite(v := c.trial_value)] or [v for c in cks if finite(v := c.score)]
    return Objective("score", mode).best(values)


def _ranked(trials: dict[str, list[Saved]], mode: Mode) -> list[str]:
    """Trial ids, best first; trials without a score last."""
    values = {tid: _value(cks, mode) for tid, cks in trials.items()}
    return Objective("score", mode).ranked(trials, lambda tid: values[tid])


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

class Disk(NamedTuple):
    size: int
    target: str | None  # a sharded trial's Ray Train checkpoint, deleted with its pointer


def measure(path: Path, fs: Any = None) -> Disk:
    if fs is not None:
        target = _bucket_train_target(fs, path)
        return Disk(_bucket_size(fs, path) + (_bucket_size(fs, Path(target)) if target else 0), target)
    target = _train_target(path)
    return Disk(_tree_size(path) + (_tree_size(Path(target)) if target else 0), target)


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


def _bucket_train_target(fs: Any, path: Path) -> str | None:
    """A sharded trial's pointer in a bucket: the Ray Train checkpoint it names (a path in the same bucket)."""
    import json

    try:
        with fs.open_input_stream(f"{path}/{POINTER}") as f:
            return str(json.loads(f.read())["checkpoint"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as e:
        log.warning("checkpoint %s: unreadable %s (%s); its Ray Train checkpoint is kept", path, POINTER, e)
        return None


def _bucket_size(fs: Any, path: Path) -> int:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(str(path), recursive=True, allow_not_found=True))
    return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)


def remove(path: Path, target: str | None, kept_targets: set[str], fs: Any = None) -> None:
    if fs is not None:
        for doomed in ([target] if target and target not in kept_targets else []) + [str(path)]:
            try:
                fs.delete_dir(doomed)
            except OSError as e:  # gone already, or the bucket unreachable: kept, and said
                log.warning("could not delete the checkpoint %s: %s", doomed, e)
        return
    if target and target not in kept_targets:
        shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)


def _checkpoint_dirs(trial_path: str, fs: Any) -> list[Path]:
    if fs is None:
        return list(Path(trial_path).glob("checkpoint_*"))
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(fs_path(trial_path), allow_not_found=True)
    return [Path(i.path) for i in fs.get_file_info(selector)
            if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]


def to_bytes(gb: float | None) -> int | None:
    return None if gb is None else int(gb * 1e9)


# --- at the end of a sweep --------------------------------------------------------------------------------------------

def prune(trials: list[dict[str, Any]], *, mode: Mode | None = None, keep_best: int | None = None,
          max_total_gb: float | None = None, fs: Any = None) -> Pruned:
    """Apply `plan` to the checkpoints of these ended trials (summary.json's: ``trial_id``, ``path``, ``value``,
    ``checkpoint`` = the best one; in a bucket, ``fs`` is its filesystem); a sharded trial's Ray Train checkpoints go
    with their pointers. ``mode`` ranks the trials, needed with ``keep_best`` or ``max_total_gb``. Returns how many
    checkpoints were deleted, the bytes freed, and by how many bytes what is left still exceeds ``max_total_gb``."""
    if mode is None and (keep_best is not None or max_total_gb is not None):
        raise ValueError("prune ranks trials when keep_best or max_total_gb is set: pass mode")
    disks: dict[Path, Disk] = {}
    records = [c for t in trials for c in _on_disk(t, disks, fs)]
    p = plan(records, mode=mode or "min", keep_best=keep_best, max_total_bytes=to_bytes(max_total_gb),
             now=time.time(), grace_s=0.0)
    doomed = set(p.delete)
    kept_targets = {t for c in records if c.path not in doomed and (t := disks[c.path].target)}
    for path in p.delete:
        remove(path, disks[path].target, kept_targets, fs)
    return Pruned(len(p.delete), sum(disks[path].size for path in p.delete), p.over_limit_bytes)


def _on_disk(trial: dict[str, Any], disks: dict[Path, Disk], fs: Any = None) -> list[Saved]:
    found = sorted(_checkpoint_dirs(trial["path"], fs))  # Tune's names sort by index
    best = Path(trial["checkpoint"]).name if trial.get("checkpoint") else None
    out = []
    for c in found:
        disks[c] = measure(c, fs)
        out.append(Saved(trial["trial_id"], c, score=trial.get("value") if c.name == best else None,
                         size=disks[c].size, superseded_at=None if c == found[-1] else 0.0,
                         trial_value=trial.get("value")))
    return out
