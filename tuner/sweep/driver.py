"""The one sweep driver. A new sweep (``tuner run``), a sweep whose driver died (``tuner resume``) and more trials
for a finished one (``tuner extend``) go through the same lifecycle: the trainable and its data, a Ray session, the
placement pre-flight, the sweep's record in the store, the Tuner's fit, the summary, the end in the store. They
differ only in how they get their Tuner and how they make their summary (a ``_Start``).

``tuner resume``: Ray Tune restores the experiment from its directory (the searcher's and scheduler's state, every
trial's status and latest checkpoint); trials that were running continue from their checkpoints, finished and
errored trials are never run again, and the store's callback, restored with the experiment, keeps recording.
``tuner extend``: the new trials run as a Tune experiment inside the sweep's directory (``extend-K/``), their
searcher warm-started with every past observation (tuner.search.warm); the summary, the leaderboard and the best
model then cover every trial of the sweep.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tuner._util import storage
from tuner.spec import Spec, SpecError, catalog
from tuner.spec.fidelity import Fidelity, fidelity
from tuner.store import open_store, start_sweep
from tuner.sweep import records
from tuner.sweep.placement import fit_to_cluster
from tuner.sweep.summary import (
    LEADERBOARD,
    SUMMARY,
    configs_to_run,
    ended_trials,
    load_summary,
    merged,
    num_trials,
    prune_ended,
    summarize,
    write_results,
)
from tuner.sweep.tuner import build_tuner, make_trainable, ray_session, restore_tuner

MakeTuner = Callable[[Spec, Fidelity, Any, "Path | None", list[Any]], Any]


@dataclass
class SweepResult:
    path: Path
    summary: dict[str, Any]

    @property
    def best(self) -> dict[str, Any] | None:
        return self.summary.get("best")

    @property
    def trials(self) -> list[dict[str, Any]]:
        return self.summary["trials"]


@dataclass
class _Start:
    """How one kind of run gets its Tuner and its summary."""

    sweep: Spec  # the sweep's own spec: its directory, its trainable, its record in the store
    runs: Spec  # what Ray runs (an extension's spec: its own directory and trial count)
    engine: Engine
    record: Callable[[], int | None]  # makes or reopens the sweep's record in the store: its id
    tuner: MakeTuner
    summary: Callable[[Spec, Any, Fidelity], dict[str, Any]]  # (what ran, the ResultGrid, the fidelity)
    watch: bool = True  # the progress line and the store callback (a restored experiment brings its own)


def run_sweep(spec: Spec, *, address: str | None = None, overwrite: bool = False, verbose: bool = False,
              console: Any = None, store: str | None = None) -> SweepResult:
    """Run the sweep; its trials and every result they report are recorded in the sweep store as they arrive
    (``store``: a SQLAlchemy URL; default ``<storage>/tuner.db``)."""
    records.check_destination(spec, overwrite)
    engine, replace = records.open_sweep_store(spec, store, overwrite)

    def record() -> int:
        if overwrite:  # checked by check_destination: an earlier sweep of this name
            if spec.sweep_dir.exists():
                shutil.rmtree(spec.sweep_dir)
            if spec.bucket is not None:
                spec.bucket.delete("")
        sweep_id = start_sweep(engine, spec.name, spec=spec.model_dump(mode="json"), storage=spec.location,
                               metric=spec.search.metric, mode=spec.search.mode, replace=replace)
        records.save_spec(spec)
        return sweep_id

    def tuner(runs: Spec, f: Fidelity, trainable: Any, data_dir: Path | None, callbacks: list[Any]) -> Any:
        return build_tuner(runs, f, trainable, data_dir, callbacks=callbacks)

    return _drive(_Start(spec, spec, engine, record, tuner, _finish), address, verbose, console)


ERRORED = ("retry", "restart")  # errored trials on resume: again from their last checkpoint, or from scratch


def resume_sweep(sweep_dir: str | Path, *, address: str | None = None, verbose: bool = False,
                 store: str | None = None, errored: str | None = None) -> SweepResult:
    """Finish a sweep from its directory; ``errored`` ("retry" or "restart") runs its errored trials again too."""
    if errored not in (None, *ERRORED):
        raise ValueError(f"errored={errored!r}: expected one of {ERRORED}")
    d = records.local_dir(sweep_dir)
    if not records.is_sweep_dir(d):
        raise SpecError([("name", f"{sweep_dir} holds no sweep to resume")])
    spec = records.saved_spec(d)
    if spec.bucket is not None and not spec.bucket.exists("tuner.pkl") or spec.bucket is None and not (
            d / "tuner.pkl").is_file():
        raise SpecError([("name", f"{sweep_dir} holds no sweep to resume")])
    if spec.bucket is None and spec.sweep_dir != d:  # moved since it ran: its results now live here
        spec = spec.model_copy(update={"storage": str(d.parent), "name": d.name})
    engine = open_store(store, d.parent)

    def tuner(runs: Spec, f: Fidelity, trainable: Any, data_dir: Path | None, callbacks: list[Any]) -> Any:
        return restore_tuner(runs, f, trainable, data_dir, errored=errored)

    def record() -> int | None:
        return records.reopen_in_store(engine, spec.name, drop_errored=errored == "restart")

    return _drive(_Start(spec, spec, engine, record, tuner, _finish, watch=False), address, verbose, None)


def extend_sweep(sweep_dir: str | Path, trials: int, *, address: str | None = None, verbose: bool = False,
                 store: str | None = None) -> SweepResult:
    d = records.local_dir(sweep_dir)
    if not (d / "summary.json").is_file():
        raise SpecError([("name", f"{d} holds no finished sweep to extend (tuner resume finishes one whose driver "
                                  f"died)")])
    old = load_summary(d)
    if old.get("interrupted"):
        raise SpecError([("name", f"{d.name} was interrupted: tuner resume {d.name} finishes it first")])
    spec = records.saved_spec(d)
    if spec.search.algorithm == "grid":
        raise SpecError([("search.algorithm", "a grid sweep has run every combination; there is nothing to add")])
    past = [t for t in old["trials"] if t["value"] is not None]
    learns = spec.search.algorithm in catalog.LEARNING_SEARCHERS
    size = configs_to_run(spec)
    if size is not None:  # the searcher ends the extension once every config has run
        left = size - len({repr([t["config"].get(key) for key in spec.search.space]) for t in past})
        if left <= 0:
            raise SpecError([("search.space", f"every one of the {size} configs of the space has run; there is "
                                              "nothing to add")])
        trials = min(trials, left + len(spec.search.points_to_evaluate))
    points = [t["config"] for t in past] if learns else []
    name = _next_extension(spec, d)
    ext = spec.model_copy(update={"storage": spec.location, "name": name, "search": spec.search.model_copy(
        update={"num_trials": trials, "points_to_evaluate": points + list(spec.search.points_to_evaluate)})})
    engine = open_store(store, d.parent)

    def tuner(runs: Spec, f: Fidelity, trainable: Any, data_dir: Path | None, callbacks: list[Any]) -> Any:
        from tuner.search import make_searcher
        from tuner.search.warm import WarmStarted

        searcher = make_searcher(runs)
        if learns:
            searcher = WarmStarted(searcher, [t["value"] for t in past], spec.search.metric, spec.search.mode,
                                   rungs=[t.get("rungs") or [] for t in past])
        return build_tuner(runs, f, trainable, data_dir, callbacks=callbacks, searcher=searcher)

    def summary(runs: Spec, grid: Any, f: Fidelity) -> dict[str, Any]:
        out = merged(old, summarize(runs, grid, f), spec.search.mode)
        out["interrupted"] = ended_trials(grid) < trials
        if not out["interrupted"]:  # the best K over the old trials and the new
            out["compute"]["checkpoints_pruned"] = prune_ended(spec, out["trials"])
        out["extensions"] = [*old.get("extensions", []), {"dir": name, "trials": trials, "warm_start": len(points)}]
        if out["best"] != old.get("best"):
            _export_best(spec, out)
        write_results(d, out)
        records.publish(spec, SUMMARY, LEADERBOARD)
        return out

    return _drive(_Start(spec, ext, engine, lambda: records.reopen_in_store(engine, spec.name), tuner, summary),
                  address, verbose, None)


def _next_extension(spec: Spec, d: Path) -> str:
    """extend-K, K one past every extension directory there (an interrupted one's too)."""
    taken = {p.name for p in d.glob("extend-*")}
    k = 1
    while f"extend-{k}" in taken or spec.bucket is not None and spec.bucket.exists(f"extend-{k}"):
        k += 1
    return f"extend-{k}"


def _drive(start: _Start, address: str | None, verbose: bool, console: Any) -> SweepResult:
    """The lifecycle every run shares."""
    sweep, engine = start.sweep, start.engine
    sweep_id: int | None = None
    try:
        f = fidelity(sweep)
        trainable, data_dir = make_trainable(sweep)  # for the LLM trial: the corpus, tokenized once (cached)
        try:
            with ray_session(address, verbose, dashboard=sweep.resources.workers_per_trial > 1):
                runs = fit_to_cluster(start.runs)  # before anything is recorded: an unplaceable trial changes nothing
                sweep_id = start.record()
                grid = _fit(start, runs, f, trainable, data_dir, sweep_id, console)
            summary = start.summary(runs, grid, f)
        except BaseException as e:
            records.end_in_store(engine, sweep_id, "interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
            raise
        records.end_in_store(engine, sweep_id, summary=summary)
        if sweep_id is not None:
            records.write_report(engine, sweep.name, sweep.sweep_dir, sweep)
        return SweepResult(sweep.sweep_dir, summary)
    finally:
        engine.dispose()


def _fit(start: _Start, runs: Spec, f: Fidelity, trainable: Any, data_dir: Path | None, sweep_id: int | None,
         console: Any) -> Any:
    from rich.console import Console

    from tuner.sweep.callbacks.progress import ProgressLine
    from tuner.sweep.callbacks.store import StoreCallback

    callbacks: list[Any] = []
    progress = None
    if start.watch:
        s = start.sweep.search
        progress = ProgressLine(s.metric, s.mode, num_trials(runs), console=console or Console(stderr=True))
        callbacks.append(progress)
        if sweep_id is not None:
            callbacks.append(StoreCallback(start.engine, sweep_id, list(s.space), nested=not start.sweep.is_custom,
                                           time_attr=f.time_attr, max_t=None if s.scheduler == "fifo" else f.max_t))
    try:
        return start.tuner(runs, f, trainable, data_dir, callbacks).fit()
    finally:
        if progress is not None:
            progress.close()


def _finish(spec: Spec, grid: Any, f: Fidelity) -> dict[str, Any]:
    """summary.json, leaderboard.csv and the best model, from a finished (or interrupted) Tune run."""
    from tuner.schedulers.compute_budget import load_report

    summary = summarize(spec, grid, f)
    spending = load_report(spec.sweep_dir) if spec.budget.limited else None
    if spending is not None:
        summary["compute"]["budget"] = spending
        summary["ended_by"] = "budget" if spending["ended_by"] else None
    # Tune traps Ctrl+C and returns from fit(): say so rather than pass a half-run sweep off as finished.
    summary["interrupted"] = ended_trials(grid) < num_trials(spec) and not summary.get("ended_by")
    _export_best(spec, summary)
    if not summary["interrupted"]:  # an interrupted sweep may still be resumed from any of them
        summary["compute"]["checkpoints_pruned"] = prune_ended(spec, summary["trials"])
    write_results(spec.sweep_dir, summary)
    records.publish(spec, SUMMARY, LEADERBOARD)
    return summary


def _export_best(spec: Spec, summary: dict[str, Any]) -> None:
    """The best trial's model as a ``save_pretrained`` directory, ``<sweep>/best_model`` (LLM trials only)."""
    best = summary["best"]
    if spec.is_custom or not best or not best.get("checkpoint"):
        return
    from tuner.trial.checkpoint import export_model

    bucket = spec.bucket
    if bucket is None:
        summary["best_model"] = str(export_model(best["checkpoint"], spec.sweep_dir / "best_model"))
        return
    from tuner.trial.parallel import POINTER, resolve_checkpoint

    with tempfile.TemporaryDirectory(prefix="tuner-best-") as tmp:
        local = Path(tmp) / "checkpoint"
        storage.Bucket(best["checkpoint"], bucket.endpoint).download("", local)
        if (local / POINTER).is_file():  # a sharded trial's: the weights are in its Ray Train checkpoint
            target = f"{bucket.scheme}://{resolve_checkpoint(local)}"
            local = Path(tmp) / "train_checkpoint"
            storage.Bucket(target, bucket.endpoint).download("", local)
        export_model(local, spec.sweep_dir / "best_model")
    records.publish(spec, "best_model")
    summary["best_model"] = bucket.child("best_model").uri
