"""Build and run the Ray Tune sweep of a Spec; write summary.json, leaderboard.csv and the best model."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import space as sp
from tuner.budget import Budget, budget
from tuner.checks import load_trainable
from tuner.space import python_value
from tuner.spec import Spec, SpecError, TrialSpec, upper_bound

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Ray's bookkeeping fields that say nothing about a trial's outcome (the tag repeats the whole config).
_NOISE = ("config", "experiment_tag", "should_checkpoint", "checkpoint_dir_name")


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


def check_destination(spec: Spec, overwrite: bool) -> None:
    """A sweep never lands on top of another one's results by accident, and --overwrite deletes only a sweep."""
    d = spec.sweep_dir
    if not d.exists() or not any(d.iterdir()):
        return
    if not overwrite:
        raise SpecError([("name", f"{d} already holds a sweep; pass --overwrite to replace it, "
                                  f"or --set name=<another>")])
    if not is_sweep_dir(d):
        raise SpecError([("name", f"{d} is not empty and holds no tuner sweep; refusing to delete it "
                                  f"(choose another name or storage)")])


def is_sweep_dir(d: Path) -> bool:
    return ((d / "summary.json").is_file() or (d / "tuner.pkl").is_file() or (d / SAVED_SPEC).is_file()
            or any(d.glob("experiment_state-*.json")))


def prepare_data(spec: Spec) -> Path:
    """Tokenize the corpus once for the whole sweep (cached under <storage>/.cache/data by content hash)."""
    from tuner.data import TokenData, prepare
    from tuner.model import build_tokenizer

    tokenizer = build_tokenizer(spec.model)
    prepared = prepare(spec.data.source, tokenizer, spec.sweep_dir.parent / ".cache" / "data",
                       val_fraction=spec.data.val_fraction, text_field=spec.data.text_field)
    TokenData(prepared.path).check(int(upper_bound(spec, "data.seq_len")))
    return prepared.path


def param_space(spec: Spec, b: Budget, data_dir: Path | None) -> dict[str, Any]:
    """The Tune param space. For the LLM trial it is the whole trial spec with domains at the tuned keys, so each
    trial receives its full resolved spec; a custom trainable gets the plain names of ``search.space``."""
    domains = spec.tune_domains(grid=spec.search.algorithm == "grid")
    if spec.is_custom:
        return domains
    tree: dict[str, Any] = {sec: getattr(spec, sec).model_dump() for sec in TrialSpec.model_fields}
    for key, domain in domains.items():
        sp.set_path(tree, key, domain)
    tree["run"] = {"data_dir": str(data_dir), "budget": b.as_dict(), "train_storage": str(spec.sweep_dir / "train")}
    return tree


def init_ray(address: str | None, verbose: bool, *, dashboard: bool = False) -> bool:
    """Connect to ``address`` (or RAY_ADDRESS), else start an embedded local Ray. True if we started it.

    Sharded trials need the embedded Ray's dashboard: Ray Train frees a stopped run's placement group only once the
    state API (served by the dashboard) says its controller is dead; without it, every paused or stopped sharded
    trial would leak its workers' resources.
    """
    import ray

    if ray.is_initialized():
        return False
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=verbose, logging_level=logging.WARNING)
    else:
        # "local": a new embedded Ray even when `ray start` runs on this machine (ray.init() would join that one).
        ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1", log_to_driver=verbose,
                 logging_level=logging.WARNING)
    return True


def make_trainable(spec: Spec) -> tuple[Any, Path | None]:
    """The function each trial runs, and (for the LLM trial) the corpus prepared for the whole sweep."""
    if spec.is_custom:
        import ray.cloudpickle

        trainable = load_trainable(spec)
        # Ship the user's module by value: trial workers (local or remote) need not find it on their path.
        ray.cloudpickle.register_pickle_by_value(__import__(trainable.__module__, fromlist=["_"]))
        return trainable, None
    from tuner.trial import train_llm

    return train_llm, prepare_data(spec)


def build_tuner(spec: Spec, b: Budget, trainable: Any, data_dir: Path | None, *, callbacks: list[Any],
                stop: Any = None, searcher: Any = None) -> Any:
    """The ray.tune.Tuner of a sweep: tuner's searcher and scheduler, checkpoint policy and result loggers."""
    # Checkpointing at every report makes Tune warn about experiment-state snapshots; they are cheap here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's newer console output prints its own banner whatever the verbosity; ours is the progress line.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune saves the experiment's state (what `tuner resume` restores) every 10 s or more by default; a trial
    # started since the last save is unknown to a restored sweep. Saving every second costs little for the few
    # long trials of LLM sweeps; many-trial custom sweeps keep Tune's adaptive period.
    if num_trials(spec) <= 200:
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    from ray import tune
    from ray.tune.search import Searcher

    from tuner.checkpoints import CheckpointGC
    from tuner.loggers import CsvLogger, JsonLogger
    from tuner.schedulers import make_scheduler
    from tuner.search import make_searcher

    s = spec.search
    searcher = searcher or make_searcher(spec)
    sharded = spec.resources.workers_per_trial > 1
    scheduler = make_scheduler(spec, b)
    # One scheduler object for Tune and the GC: pickled together with the experiment, they stay one after a resume.
    gc = CheckpointGC(s.metric, s.mode, spec.checkpoint.keep_best, spec.checkpoint.max_total_gb, scheduler=scheduler)
    if spec.budget.limited:
        from tuner.spending import BudgetScheduler, Ledger

        scheduler = BudgetScheduler(scheduler, Ledger.for_spec(spec))
    return tune.Tuner(
        with_trial_resources(trainable, spec),
        param_space=param_space(spec, b, data_dir),
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, search_alg=searcher, scheduler=scheduler,
            num_samples=1 if s.algorithm == "grid" else s.num_trials,
            # Tune limits only Searchers itself; the grid/random generator takes the limit in its constructor.
            max_concurrent_trials=s.max_concurrent if isinstance(searcher, Searcher) else None,
            # A sharded trial's actor owns its Train run: a fresh actor per trial ends the run with the trial.
            reuse_actors=not sharded, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=str(spec.sweep_dir.parent), stop=stop,
            checkpoint_config=_checkpoint_config(spec),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            callbacks=[*callbacks, gc, JsonLogger(), CsvLogger()], verbose=0),
    )


def fit_to_cluster_or_stop(spec: Spec, started: bool) -> Spec:
    """The placement pre-flight (tuner.placement); an embedded Ray we started is stopped if it fails."""
    from tuner.placement import fit_to_cluster

    try:
        return fit_to_cluster(spec)
    except SpecError:
        if started:
            import ray

            ray.shutdown()
        raise


def with_trial_resources(trainable: Any, spec: Spec) -> Any:
    from ray import tune

    r = spec.resources
    if r.workers_per_trial > 1:  # the trial drives a Ray Train run, whose placement group reserves the workers
        from tuner.sharded import DRIVER_BUNDLE

        return tune.with_resources(trainable, tune.PlacementGroupFactory([DRIVER_BUNDLE]))
    return tune.with_resources(trainable, {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker})


SAVED_SPEC = "tuner_spec.json"


def save_spec(spec: Spec) -> None:
    """The validated spec beside the results, for `tuner resume` (absolute paths; the spec file may be gone)."""
    spec.sweep_dir.mkdir(parents=True, exist_ok=True)
    raw = {**spec.model_dump(mode="json", exclude_unset=True), "storage": str(spec.sweep_dir.parent)}
    (spec.sweep_dir / SAVED_SPEC).write_text(json.dumps({"spec": raw, "spec_dir": spec.spec_dir}, indent=1))


def saved_spec(sweep_dir: Path) -> Spec:
    from tuner.spec import validate

    path = sweep_dir / SAVED_SPEC
    if not path.is_file():
        raise SpecError([("name", f"{sweep_dir} holds no sweep tuner can resume (no {SAVED_SPEC})")])
    saved = json.loads(path.read_text())
    return validate(saved["spec"], spec_dir=saved["spec_dir"], source=str(path))


def finish(spec: Spec, grid: Any, b: Budget) -> dict[str, Any]:
    """summary.json, leaderboard.csv and the best model, from a finished (or interrupted) Tune run."""
    from tuner.spending import load_report

    summary = summarize(spec, grid, b)
    spending = load_report(spec.sweep_dir) if spec.budget.limited else None
    if spending is not None:
        summary["compute"]["budget"] = spending
        summary["ended_by"] = "budget" if spending["ended_by"] else None
    # Tune traps Ctrl+C and returns from fit(): say so rather than pass a half-run sweep off as finished.
    summary["interrupted"] = ended_trials(grid) < num_trials(spec) and not summary.get("ended_by")
    if not spec.is_custom and summary["best"] and summary["best"].get("checkpoint"):
        from tuner.trial import export_model

        summary["best_model"] = str(export_model(summary["best"]["checkpoint"], spec.sweep_dir / "best_model"))
    if not summary["interrupted"]:  # an interrupted sweep may still be resumed from any of them
        summary["compute"]["checkpoints_pruned"] = prune_ended(spec, summary["trials"])
    write_results(spec.sweep_dir, summary)
    return summary


def prune_ended(spec: Spec, trials: list[dict[str, Any]]) -> int:
    """The end-of-sweep pass of the checkpoint policy (tuner.checkpoints) over ended trials; a trial whose best
    checkpoint went with it no longer names one. How many checkpoints were deleted."""
    from tuner.checkpoints import prune

    c = spec.checkpoint
    pruned = prune(trials, mode=spec.search.mode, keep_best=c.keep_best, max_total_gb=c.max_total_gb)
    if pruned.over_limit_bytes:
        logging.getLogger(__name__).warning(
            "the sweep's checkpoints exceed checkpoint.max_total_gb=%s by %.3f GB: the best trial's is kept",
            c.max_total_gb, pruned.over_limit_bytes / 1e9)
    for t in trials:
        if t.get("checkpoint") and not Path(t["checkpoint"]).exists():
            t["checkpoint"] = None
    return pruned.deleted


def ended_trials(grid: Any) -> int:
    trials = grid._experiment_analysis.trials  # ResultGrid lists results, not the trials' states
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials)


def run_sweep(spec: Spec, *, address: str | None = None, overwrite: bool = False, verbose: bool = False,
              console: Any = None, store: str | None = None) -> SweepResult:
    """Run the sweep; its trials and every result they report are recorded in the sweep store as they arrive
    (``store``: a SQLAlchemy URL; default ``<storage>/tuner.db``)."""

    check_destination(spec, overwrite)
    engine, replace = open_sweep_store(spec, store, overwrite)
    try:
        b = budget(spec)
        trainable, data_dir = make_trainable(spec)
        started = init_ray(address, verbose, dashboard=spec.resources.workers_per_trial > 1)
        spec = fit_to_cluster_or_stop(spec, started)
        return _run(spec, b, trainable, data_dir, engine, replace=replace, overwrite=overwrite, started=started,
                    console=console)
    finally:
        engine.dispose()


def _run(spec: Spec, b: Budget, trainable: Any, data_dir: Path | None, engine: Engine, *, replace: bool,
         overwrite: bool, started: bool, console: Any) -> SweepResult:
    from rich.console import Console

    from tuner.progress import ProgressLine
    from tuner.recorder import StoreCallback
    from tuner.store import start_sweep

    s = spec.search
    progress = ProgressLine(s.metric, s.mode, num_trials(spec), console=console or Console(stderr=True))
    sweep_id: int | None = None
    try:
        try:
            if overwrite and spec.sweep_dir.exists():
                shutil.rmtree(spec.sweep_dir)  # checked by check_destination: an earlier sweep of this name
            sweep_id = start_sweep(engine, spec.name, spec=spec.model_dump(mode="json"), storage=str(spec.sweep_dir),
                                   metric=s.metric, mode=s.mode, replace=replace)
            save_spec(spec)
            recorder = StoreCallback(engine, sweep_id, list(s.space), nested=not spec.is_custom, time_attr=b.time_attr,
                                     max_t=None if s.scheduler == "fifo" else b.max_t)
            grid = build_tuner(spec, b, trainable, data_dir, callbacks=[progress, recorder]).fit()
        finally:
            progress.close()
            if started:
                import ray

                ray.shutdown()
        summary = finish(spec, grid, b)
    except BaseException as e:
        _end_in_store(engine, sweep_id, "interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
        raise
    _end_in_store(engine, sweep_id, summary=summary)
    return SweepResult(spec.sweep_dir, summary)


def open_sweep_store(spec: Spec, url: str | None, overwrite: bool) -> tuple[Engine, bool]:
    """The sweep store's engine, and whether the store's record of an earlier sweep of this name is to be replaced:
    with --overwrite, or when it is the record of this very directory (whose results check_destination found gone).
    A sweep of this name elsewhere is a clash, refused before anything starts."""
    from tuner.store import find_sweep, open_store, safe_url

    engine = open_store(url, spec.sweep_dir.parent)
    try:
        old = find_sweep(engine, spec.name)
    except BaseException:
        engine.dispose()
        raise
    if old is None or overwrite or old["storage"] == str(spec.sweep_dir):
        return engine, old is not None
    engine.dispose()
    raise SpecError([("name", f"the sweep store {safe_url(engine.url)} already holds a sweep named {spec.name} "
                              f"(results in {old['storage']}); pass --overwrite to replace it, "
                              f"or --set name=<another>")])


def _end_in_store(engine: Engine, sweep_id: int | None, status: str | None = None,
                  summary: dict[str, Any] | None = None) -> None:
    """Mark the sweep ended in the store (with its summary's outcome, when it has one); a store that fails here costs
    a warning, never the sweep's outcome (its results are in summary.json) nor the error that ended it."""
    from tuner.store import finish_sweep

    if sweep_id is None:  # no record of it: the sweep failed before one was made, or this store never knew it
        return
    final = {"best": summary["best"], "trials": summary["trials"]} if summary else {}
    status = status or ("interrupted" if summary and summary["interrupted"] else "finished")
    try:
        finish_sweep(engine, sweep_id, status, **final)
    except Exception as e:
        logging.getLogger(__name__).warning("sweep store: could not mark the sweep %s: %s", status, e)


def _checkpoint_config(spec: Spec) -> Any:
    """Every checkpoint is kept while the sweep runs; at its end each trial keeps its best and its latest
    (tuner.checkpoints says why)."""
    from ray import tune

    s = spec.search
    return tune.CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=s.metric, checkpoint_score_order=s.mode)


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def num_trials(spec: Spec) -> int:
    return sp.grid_size(spec.dimensions()) if spec.search.algorithm == "grid" else spec.search.num_trials


def summarize(spec: Spec, grid: Any, b: Budget) -> dict[str, Any]:
    """summary.json's contents (DESIGN.md): a trial's value is the best ``metric`` it reported."""
    s = spec.search
    keys = list(s.space)
    better = min if s.mode == "min" else max
    trials = []
    # A trial that failed before its first result has no config in its result: its Trial has it.
    for result, trial in zip(grid, grid._experiment_analysis.trials, strict=True):
        last = _jsonable(result.metrics or {})
        config = result.config or trial.config or {}
        tuned = {k: _jsonable(sp.get_path(config, k) if not spec.is_custom else config.get(k)) for k in keys}
        values = _reported(result, s.metric)
        value = better(values) if values else None
        ckpt = None
        if value is not None and result.best_checkpoints:
            ckpt = result.get_best_checkpoint(s.metric, s.mode)
        # Ray marks every ended trial done; "completed" means it used its whole budget (or nothing stops early).
        finished = s.scheduler == "fifo" or (last.get(b.time_attr) or 0) >= b.max_t
        trials.append({
            # The trial directory names the trial; after a PBT exploit, last metrics may be the donor's copy.
            "trial_id": Path(result.path).name.removeprefix("trial_"),
            "status": "ERROR" if result.error else "TERMINATED",
            "state": "error" if result.error else ("completed" if finished else "stopped"),
            "config": tuned,
            "value": value,
            "last_result": {k: v for k, v in last.items() if k not in _NOISE},
            "iterations": int(last.get("training_iteration") or 0),
            "checkpoint": ckpt.path if ckpt else None,
            "path": result.path,
            **({"error": _error_line(result.error)} if result.error else {}),
        })
    ranked = [t for t in trials if t["value"] is not None]
    best = better(ranked, key=lambda t: t["value"]) if ranked else None
    compute = {
        "trial_seconds": round(sum(t["last_result"].get("time_total_s") or 0.0 for t in trials), 3),
        "iterations": sum(t["iterations"] for t in trials),
        "tokens": sum(int(t["last_result"].get("tokens") or 0) for t in trials) if not spec.is_custom else None,
    }
    return {
        "name": spec.name,
        "metric": s.metric,
        "mode": s.mode,
        "time_attr": b.time_attr,
        "budget": b.as_dict(),
        "best": {k: best[k] for k in ("trial_id", "config", "value", "checkpoint")} if best else None,
        "trials": trials,
        "compute": compute,
    }


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


def write_results(sweep_dir: Path, summary: dict[str, Any]) -> None:
    from tuner.report import write_leaderboard_csv

    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(python_value(summary), indent=1, default=str))
    tmp.replace(sweep_dir / "summary.json")
    write_leaderboard_csv(summary, sweep_dir / "leaderboard.csv")


def load_summary(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    p = p / "summary.json" if p.is_dir() else p
    return json.loads(p.read_text())
