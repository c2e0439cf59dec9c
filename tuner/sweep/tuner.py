"""Assembling a sweep's ``ray.tune.Tuner``: the Ray session it runs in, the trainable and the data it trains on,
the param space, the searcher and scheduler, the checkpoint policy and the callbacks. Ray is imported inside the
functions: the CLI imports this module for commands that start nothing."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner._util import tree
from tuner._util.net import free_port
from tuner.spec import Spec, TrialSpec, upper_bound
from tuner.spec.checks import load_trainable
from tuner.spec.fidelity import Fidelity
from tuner.sweep.summary import num_trials


@contextlib.contextmanager
def ray_session(address: str | None, verbose: bool, *, dashboard: bool = False) -> Iterator[bool]:
    """Connect to ``address`` (or RAY_ADDRESS), else start an embedded local Ray, for the block; an embedded Ray is
    stopped when the block ends. Yields whether this call started Ray (False when it was already connected).

    Sharded trials need the embedded Ray's dashboard: Ray Train frees a stopped run's placement group only once the
    state API (served by the dashboard) says its controller is dead; without it, every paused or stopped sharded
    trial would leak its workers' resources.
    """
    import ray

    started = False
    if not ray.is_initialized():
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, log_to_driver=verbose, logging_level=logging.WARNING)
        else:
            start_embedded_ray(dashboard=dashboard, verbose=verbose)
        started = True
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def start_embedded_ray(*, dashboard: bool, verbose: bool = False, num_cpus: int | None = None) -> None:
    """A new local Ray for this process, even when `ray start` runs on this machine (ray.init() would join that one).

    Its workers are told its address (RAY_ADDRESS): Ray Train's placement group cleaner asks the state API of "the"
    Ray on this machine. Beside a second sweep's Ray it failed (several found): a stopped sharded trial's placement
    group leaked and the sweep waited for ever. Beside a `ray start` head it asked the head, with the same result."""
    import ray

    port = free_port()
    # The GCS port, chosen before it starts, and the address its processes inherit (the raylet passes its environment
    # to the workers it starts; a job runtime env would do it too, at twice the cost of each worker's start). With
    # address "local", this ray.init itself reads no RAY_ADDRESS.
    with _environ(RAY_GCS_SERVER_PORT=str(port), RAY_ADDRESS=f"127.0.0.1:{port}"):
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                 log_to_driver=verbose, logging_level=logging.WARNING)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prepare_data(spec: Spec) -> Path:
    """Tokenize the corpus once for the whole sweep (cached under <storage>/.cache/data by content hash)."""
    from tuner.trial.data import TokenData, prepare
    from tuner.trial.model import build_tokenizer

    tokenizer = build_tokenizer(spec.model)
    prepared = prepare(spec.data.source, tokenizer, spec.sweep_dir.parent / ".cache" / "data",
                       val_fraction=spec.data.val_fraction, text_field=spec.data.text_field)
    TokenData(prepared.path).check(int(upper_bound(spec, "data.seq_len")))
    return prepared.path


def make_trainable(spec: Spec) -> tuple[Any, Path | None]:
    """The function each trial runs, and (for the LLM trial) the corpus prepared for the whole sweep."""
    if spec.is_custom:
        import ray.cloudpickle

        trainable = load_trainable(spec)
        # Ship the user's module by value: trial workers (local or remote) need not find it on their path.
        ray.cloudpickle.register_pickle_by_value(__import__(trainable.__module__, fromlist=["_"]))
        return trainable, None
    from tuner.trial.entry import train_llm

    return train_llm, prepare_data(spec)


def param_space(spec: Spec, f: Fidelity, data_dir: Path | None) -> dict[str, Any]:
    """The Tune param space. For the LLM trial it is the whole trial spec with domains at the tuned keys, so each
    trial receives its full resolved spec (``tuner.trial.entry.decode`` reads it); a custom trainable gets the plain
    names of ``search.space``."""
    from tuner.trial.entry import run_config

    domains = spec.tune_domains(grid=spec.search.algorithm == "grid")
    if spec.is_custom:
        return domains
    space: dict[str, Any] = {sec: getattr(spec, sec).model_dump() for sec in TrialSpec.model_fields}
    for key, domain in domains.items():
        tree.set_path(space, key, domain)
    bucket = spec.bucket
    train = bucket.child("train").uri if bucket is not None else str(spec.sweep_dir / "train")
    space["run"] = run_config(data_dir, f, train, spec.storage_endpoint)
    return space


def with_trial_resources(trainable: Any, spec: Spec) -> Any:
    from ray import tune

    r = spec.resources
    if r.workers_per_trial > 1:  # the trial drives a Ray Train run, whose placement group reserves the workers
        from tuner.trial.workers import DRIVER_BUNDLE

        return tune.with_resources(trainable, tune.PlacementGroupFactory([DRIVER_BUNDLE]))
    return tune.with_resources(trainable, {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker})


def build_tuner(spec: Spec, f: Fidelity, trainable: Any, data_dir: Path | None, *, callbacks: list[Any],
                searcher: Any = None, stop: Any = None) -> Any:
    """The ray.tune.Tuner of a sweep: tuner's searcher and scheduler, checkpoint policy and result loggers."""
    _tune_settings(spec)
    from ray import tune
    from ray.tune.search import Searcher

    from tuner.schedulers import make_scheduler
    from tuner.search import make_searcher
    from tuner.sweep.callbacks.checkpoint_gc import CheckpointGC
    from tuner.sweep.callbacks.loggers import CsvLogger, JsonLogger
    from tuner.sweep.callbacks.tracking import tracking_callbacks

    s = spec.search
    searcher = searcher or make_searcher(spec)
    sharded = spec.resources.workers_per_trial > 1
    scheduler = make_scheduler(spec, f)
    for callback in callbacks:  # the store records PBT's exploits: the sweep's lineage
        if hasattr(callback, "follow_exploits"):
            callback.follow_exploits(scheduler)
    # One scheduler object for Tune and the GC: pickled together with the experiment, they stay one after a resume.
    gc = CheckpointGC(s.metric, s.mode, spec.checkpoint.keep_best, spec.checkpoint.max_total_gb, scheduler=scheduler)
    if spec.budget.limited:
        from tuner.schedulers.compute_budget import ComputeBudgetScheduler, Ledger

        scheduler = ComputeBudgetScheduler(scheduler, Ledger.for_spec(spec))
    return tune.Tuner(
        with_trial_resources(trainable, spec),
        param_space=param_space(spec, f, data_dir),
        tune_config=tune.TuneConfig(
            metric=s.metric, mode=s.mode, search_alg=searcher, scheduler=scheduler,
            num_samples=1 if s.algorithm == "grid" else s.num_trials,
            # Tune limits only Searchers itself; the grid/random generator takes the limit in its constructor.
            max_concurrent_trials=s.max_concurrent if isinstance(searcher, Searcher) else None,
            # A sharded trial's actor owns its Train run: a fresh actor per trial ends the run with the trial.
            reuse_actors=not sharded, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=spec.name, **storage_of(spec), stop=stop,
            checkpoint_config=_checkpoint_config(spec),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            callbacks=[*callbacks, gc, JsonLogger(), CsvLogger(), *tracking_callbacks(spec)], verbose=0),
    )


def restore_tuner(spec: Spec, f: Fidelity, trainable: Any, data_dir: Path | None, *,
                  errored: str | None = None) -> Any:
    """The Tuner of a sweep whose driver died, restored from its directory: running trials continue from their
    checkpoints, finished ones are not run again; errored ones neither, unless ``errored`` is "retry" (again from
    their last checkpoint) or "restart" (from scratch)."""
    _tune_settings(spec)
    from ray import tune

    where = storage_of(spec)
    path = f"{where['storage_path']}/{spec.name}"
    return tune.Tuner.restore(path, trainable=with_trial_resources(trainable, spec), resume_unfinished=True,
                              resume_errored=errored == "retry", restart_errored=errored == "restart",
                              param_space=param_space(spec, f, data_dir),
                              storage_filesystem=where.get("storage_filesystem"))


def storage_of(spec: Spec) -> dict[str, Any]:
    """Where Ray Tune keeps the sweep's experiment: RunConfig's storage_path (the sweep's parent) and, for a
    bucket, its pyarrow filesystem."""
    bucket = spec.bucket
    if bucket is None:
        return {"storage_path": str(spec.sweep_dir.parent)}
    return {"storage_path": bucket.path.rsplit("/", 1)[0], "storage_filesystem": bucket.filesystem()}


def _tune_settings(spec: Spec) -> None:
    # Checkpointing at every report makes Tune warn about experiment-state snapshots; they are cheap here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's newer console output prints its own banner whatever the verbosity; ours is the progress line.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune saves the experiment's state (what `tuner resume` restores) every 10 s or more by default; a trial
    # started since the last save is unknown to a restored sweep. Saving every second costs little for the few
    # long trials of LLM sweeps; many-trial custom sweeps keep Tune's adaptive period.
    if num_trials(spec) <= 200:
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")


def _checkpoint_config(spec: Spec) -> Any:
    """Every checkpoint is kept while the sweep runs; at its end each trial keeps its best and its latest
    (tuner.sweep.checkpoint_policy says why)."""
    from ray import tune

    s = spec.search
    return tune.CheckpointConfig(num_to_keep=None, checkpoint_score_attribute=s.metric, checkpoint_score_order=s.mode)


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"
