"""A sweep's results: summary.json (its contract is in DESIGN.md), the leaderboard CSV, the end-of-sweep pass of the
checkpoint policy, and one summary over a sweep and its extensions."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from tuner._util import tree
from tuner._util.objective import Objective
from tuner._util.storage import fs_path
from tuner._util.tree import python_value
from tuner.spec import Spec, catalog
from tuner.spec import space as sp
from tuner.spec.fidelity import Fidelity
from tuner.sweep.checkpoint_policy import prune

# Ray's bookkeeping fields that say nothing about a trial's outcome (the tag repeats the whole config).
RAY_BOOKKEEPING = ("config", "experiment_tag", "should_checkpoint", "checkpoint_dir_name")
SUMMARY = "summary.json"
LEADERBOARD = "leaderboard.csv"


def num_trials(spec: Spec) -> int:
    """The trials the sweep runs: every combination of a grid; else search.num_trials, or fewer where the searcher
    ends the sweep once every config of a finite space has run."""
    if spec.search.algorithm == "grid":
        return sp.grid_size(spec.dimensions())
    size = configs_to_run(spec)
    return spec.search.num_trials if size is None else min(spec.search.num_trials, size)


def configs_to_run(spec: Spec) -> int | None:
    """The configs of a finite space where the searcher runs each once and then ends the sweep; else None."""
    return sp.space_size(spec.dimensions()) if spec.search.algorithm in catalog.DEDUPLICATING_SEARCHERS else None


def ended_trials(grid: Any) -> int:
    trials = grid._experiment_analysis.trials  # ResultGrid lists results, not the trials' states
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials)


def summarize(spec: Spec, grid: Any, f: Fidelity) -> dict[str, Any]:
    """summary.json's contents (DESIGN.md): a trial's value is the best ``metric`` it reported."""
    s = spec.search
    objective = Objective(s.metric, s.mode)
    # A trial that failed before its first result has no config in its result: its Trial has it.
    trials = [_trial(spec, f, result, trial) for result, trial in
              zip(grid, grid._experiment_analysis.trials, strict=True)]
    best = objective.best(trials, _value, _completed)
    compute = {
        "trial_seconds": round(sum(t["last_result"].get("time_total_s") or 0.0 for t in trials), 3),
        "iterations": sum(t["iterations"] for t in trials),
        "tokens": sum(int(t["last_result"].get("tokens") or 0) for t in trials) if not spec.is_custom else None,
    }
    return {"name": spec.name, "metric": s.metric, "mode": s.mode, "time_attr": f.time_attr,
            "fidelity": f.as_dict(), "best": _best_entry(best), "trials": trials, "compute": compute}


def _trial(spec: Spec, f: Fidelity, result: Any, trial: Any) -> dict[str, Any]:
    s = spec.search
    last = _jsonable(result.metrics or {})
    config = result.config or trial.config or {}
    tuned = {k: _jsonable(_tuned_value(config, k, nested=not spec.is_custom)) for k in s.space}
    values = _reported(result, s.metric)
    value = Objective(s.metric, s.mode).best(values)
    ckpt = result.get_best_checkpoint(s.metric, s.mode) if value is not None and result.best_checkpoints else None
    finished = ran_its_course(last.get(f.time_attr), None if s.scheduler == "fifo" else f.max_t, _stopped(result))
    rungs = _at_rungs(result, f, s.metric) if f.rungs else None
    return {
        # The trial directory names the trial; after a PBT exploit, last metrics may be the donor's copy.
        "trial_id": Path(result.path).name.removeprefix("trial_"),
        "status": "ERROR" if result.error else "TERMINATED",
        "state": "error" if result.error else ("completed" if finished else "stopped"),
        "config": tuned,
        "value": value,
        "last_result": {k: v for k, v in last.items() if k not in RAY_BOOKKEEPING},
        "iterations": int(last.get("training_iteration") or 0),
        "checkpoint": _uri(spec, ckpt.path) if ckpt else None,
        "path": _uri(spec, result.path),
        **({"rungs": rungs} if rungs else {}),
        **({"error": _error_line(result.error)} if result.error else {}),
    }


def ran_its_course(last_t: Any, max_t: float | None, stopped: bool) -> bool:
    """Whether a trial that ended ran its whole fidelity ("completed", else "stopped"): it reached ``max_t``, or
    nothing stops early (``max_t`` None), or it ended on its own before (an objective that reports once, or stops
    itself). ``stopped``: Tune stopped it, a scheduler's cut or a stopper; Tune marks the result it stops a trial on
    done, and no other (every ended trial's last result is done by the time it is saved)."""
    return max_t is None or (last_t or 0) >= max_t or not stopped


def _stopped(result: Any) -> bool:
    """Whether Tune stopped the trial, from the results it logged (where they are missing: yes)."""
    df = result.metrics_dataframe
    if df is None or "done" not in df or not len(df):
        return True
    return bool(df["done"].iloc[-1])


def _uri(spec: Spec, path: str) -> str:
    """A path Ray gives (in a bucket: ``<bucket>/<key>``) as the user names it."""
    bucket = spec.bucket
    return f"{bucket.scheme}://{path}" if bucket is not None and "://" not in path else path


def _value(trial: dict[str, Any]) -> Any:
    return trial["value"]


def _completed(trial: dict[str, Any]) -> bool:
    """Its value is at full fidelity (a stopped trial's is not, whatever it is)."""
    return trial.get("state") == "completed"


def _at_rungs(result: Any, f: Fidelity, metric: str) -> list[list[float]]:
    """[rung, value] for each rung the trial reached: its first report at or past the rung (what the rung-based
    searcher learnt from; ``tuner extend`` replays them)."""
    df = result.metrics_dataframe
    if df is None or metric not in df or f.time_attr not in df:
        return []
    rows = [(float(t), float(v)) for t, v in zip(df[f.time_attr], df[metric], strict=True)
            if math.isfinite(float(v))]
    out = []
    for level in f.rungs:
        first = next((v for t, v in rows if t >= level * (1 - 1e-9)), None)
        if first is not None:
            out.append([level, first])
    return out


def _tuned_value(config: dict[str, Any], key: str, *, nested: bool) -> Any:
    try:
        return tree.get_path(config, key) if nested else config[key]
    except (KeyError, TypeError):
        return None


def _best_entry(trial: dict[str, Any] | None) -> dict[str, Any] | None:
    return {k: trial[k] for k in ("trial_id", "config", "value", "checkpoint")} if trial else None


def merged(old: dict[str, Any], new: dict[str, Any], mode: str) -> dict[str, Any]:
    """One summary over the sweep's trials and an extension's."""
    trials = [*old["trials"], *new["trials"]]
    best = Objective(old["metric"], mode).best(trials, _value, _completed)
    compute = {k: v + (new["compute"].get(k) or 0) if isinstance(v, (int, float)) else v
               for k, v in old["compute"].items()}  # the sweep's budget report stays its own
    return {**old, "trials": trials, "compute": compute, "best": _best_entry(best)}


def prune_ended(spec: Spec, trials: list[dict[str, Any]]) -> int:
    """The end-of-sweep pass of the checkpoint policy (tuner.sweep.checkpoint_policy) over ended trials; a trial
    whose best checkpoint went with it no longer names one. How many checkpoints were deleted."""
    c = spec.checkpoint
    fs = spec.bucket.filesystem() if spec.bucket is not None else None
    pruned = prune(trials, mode=spec.search.mode, keep_best=c.keep_best, max_total_gb=c.max_total_gb, fs=fs)
    if pruned.over_limit_bytes:
        logging.getLogger(__name__).warning(
            "the sweep's checkpoints exceed checkpoint.max_total_gb=%s by %.3f GB: the best trial's is kept",
            c.max_total_gb, pruned.over_limit_bytes / 1e9)
    for t in trials:
        if t.get("checkpoint") and not _exists(t["checkpoint"], fs):
            t["checkpoint"] = None
    return pruned.deleted


def _exists(path: str, fs: Any) -> bool:
    if fs is None:
        return Path(path).exists()
    import pyarrow.fs as pafs

    return bool(fs.get_file_info(fs_path(path)).type != pafs.FileType.NotFound)


def leaderboard_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Trials ranked by their value (best first; trials without a value last)."""
    trials = Objective(summary["metric"], summary["mode"]).ranked(summary["trials"], _value, _completed)
    rows = []
    for rank, t in enumerate(trials, 1):
        row = {"rank": rank, "trial_id": t["trial_id"], "state": t["state"], summary["metric"]: t["value"]}
        row.update(t["config"])
        row.update({"iterations": t["iterations"], summary["time_attr"]: t["last_result"].get(summary["time_attr"]),
                    "time_s": round(t["last_result"].get("time_total_s") or 0.0, 1)})
        rows.append(row)
    return rows


def write_results(sweep_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json (replaced atomically) and leaderboard.csv."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / f"{SUMMARY}.tmp"
    tmp.write_text(json.dumps(python_value(summary), indent=1, default=str))
    tmp.replace(sweep_dir / SUMMARY)
    rows = leaderboard_rows(summary)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with (sweep_dir / LEADERBOARD).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def load_summary(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    p = p / SUMMARY if p.is_dir() else p
    return json.loads(p.read_text())


def _reported(result: Any, metric: str) -> list[float]:
    df = result.metrics_dataframe
    if df is not None and metric in df:
        vals = [float(v) for v in df[metric].tolist()]
    else:
        vals = [float(result.metrics[metric])] if result.metrics and metric in result.metrics else []
    return [v for v in vals if math.isfinite(v)]


def _error_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    tail = [ln for ln in text if ln.strip()][-1:] or [type(error).__name__]
    return tail[0].strip()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(python_value(obj), default=str))
