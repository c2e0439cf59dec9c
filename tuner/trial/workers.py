"""Sharded trials (``resources.workers_per_trial > 1``): a Ray Train V2 ``TorchTrainer`` inside the Tune trial.

The Tune trial is a light driver: it launches one Train run whose workers all run ``tuner.trial.loop.fit`` (DDP or
FSDP2, see ``tuner.trial.parallel``), and relays every report to Tune. Ray Train owns the weights: each Tune checkpoint
is a pointer to the Train checkpoint of that report, so Tune retries, ASHA pause/resume and PBT exploits restore the
right one (the donor's, after an exploit) through the run's ``train_loop_config``. Within a run, Train restarts a
failed worker group from its own latest checkpoint (``resources.max_worker_failures``). Every launch is a new Train
run (a fresh name): a Train run of a reused name would resume its own latest checkpoint, not the donor's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from tuner._util.storage import Bucket, is_remote
from tuner.spec import ResourcesSpec, TrialSpec
from tuner.spec.fidelity import Fidelity
from tuner.trial.loop import NonFiniteLossError, fit
from tuner.trial.parallel import resolve_checkpoint, write_pointer

# What the Tune trial itself reserves: no CPU (its workers reserve theirs through Train's placement group), some
# memory, since Tune cannot place an empty request.
DRIVER_BUNDLE: dict[str, float] = {"memory": 256 * 1024**2}
ABORT_TIMEOUT_S = 30.0  # for a stopped trial's Train run to shut down its workers
# Ray Train's controller collects its workers' reports, and notices that they finished, only when it polls them: every
# 2 s by default, so each report reached Tune (and its scheduler's decision the workers) up to 2 s late, and every run
# ended ~5 s after its last step. Train hands this variable from the process that builds the trainer to its controller.
TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5"


def scaling_config(r: ResourcesSpec) -> Any:
    """One placement group for all of a trial's workers: they start together or the trial waits."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=r.workers_per_trial, use_gpu=r.gpus_per_worker > 0,
                         resources_per_worker={"CPU": r.cpus_per_worker, "GPU": r.gpus_per_worker},
                         placement_strategy="PACK" if r.placement == "pack" else "STRICT_SPREAD")


def _relay_class() -> Any:
    from ray.train.v2.api.callback import UserCallback

    class Relay(UserCallback):
        """In the Train controller: hands rank 0's metrics and the checkpoint path to the Tune trial, and, with the
        first report, the controller's own handle, so that a trial Tune stops can abort its Train run."""

        def __init__(self, queue: Any):
            self.queue = queue
            self.introduced = False

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            import ray

            controller = None if self.introduced else ray.get_runtime_context().current_actor
            self.introduced = True
            self.queue.put((dict(metrics[0]), checkpoint.path if checkpoint is not None else None, controller))

    return Relay


def train_sharded(spec: TrialSpec, fidelity: Fidelity, data_dir: str, train_storage: str,
                  storage_endpoint: str | None = None) -> None:
    """The body of the Tune function trial for a sharded trial: one Train run, its reports relayed to Tune. With
    ``train_storage`` a bucket URI, Ray Train writes the run's checkpoints there, and the workers read the one they
    restore from there."""
    from ray import tune
    from ray.util.queue import Queue

    trial_id = tune.get_context().get_trial_id() or "trial"
    restore = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = str(resolve_checkpoint(d))
    queue = Queue(actor_options={"num_cpus": 0})
    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_INTERVAL_S)  # a user's own setting wins
    run_name = f"{trial_id}-{uuid.uuid4().hex[:8]}"
    bucket = Bucket(train_storage, storage_endpoint) if is_remote(train_storage) else None
    trainer = _trainer(spec, loop_config(spec, fidelity, data_dir, restore, trial_id, bucket), run_name, train_storage,
                       queue, bucket)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # re-raised in the trial's thread below
            outcome["error"] = e

    thread = threading.Thread(target=run, name=f"train-{run_name}", daemon=True)
    thread.start()
    controller: list[Any] = []
    try:
        _relay(queue, thread, run_name, controller)
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
    finally:
        # Tune stopped the trial (ASHA, PBT pause, the sweep's end: its report raised SystemExit) or the trial failed:
        # the Train run would train on in its thread, holding its workers, and keep the trial's actor alive.
        if thread.is_alive() and controller:
            _abort(controller[0])
            thread.join(timeout=ABORT_TIMEOUT_S)
        with contextlib.suppress(Exception):
            queue.shutdown()


def _trainer(spec: TrialSpec, loop_config: dict[str, Any], run_name: str, train_storage: str, queue: Any,
             bucket: Bucket | None = None) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    return TorchTrainer(
        _worker_loop, train_loop_config=loop_config, scaling_config=scaling_config(spec.resources),
        run_config=RunConfig(
            name=run_name, storage_path=bucket.path if bucket else train_storage, callbacks=[_relay_class()(queue)],
            storage_filesystem=bucket.filesystem() if bucket else None,
            failure_config=FailureConfig(max_failures=spec.resources.max_worker_failures),
            # Keep them all: Tune's pointers (and PBT donors) name them; the sweep's checkpoint policy is Tune's.
            checkpoint_config=CheckpointConfig(num_to_keep=None)),
    )


def _relay(queue: Any, thread: threading.Thread, run_name: str, controller: list[Any]) -> None:
    """Report each of rank 0's results to Tune, with a pointer to its Train checkpoint, until the run ends; the
    controller's handle lands in ``controller`` with the first one."""
    from ray import tune
    from ray.util.queue import Empty

    while True:
        try:
            metrics, path, introduced = queue.get(timeout=0.5)
        except Empty:
            if thread.is_alive() or not queue.empty():
                continue
            return
        if introduced is not None and not controller:
            controller.append(introduced)
        if "nonfinite" in metrics:
            raise NonFiniteLossError(metrics["nonfinite"])
        with tempfile.TemporaryDirectory(prefix="tuner-pointer-") as d:
            write_pointer(Path(d), path, step=metrics.get("step"), train_run=run_name)
            tune.report({**metrics, "train_run": run_name}, checkpoint=tune.Checkpoint.from_directory(d))


def _abort(controller: Any) -> None:
    """Ray Train's graceful abort (what Ctrl-C does to a driver's run): the worker group, then the controller."""
    import ray

    with contextlib.suppress(Exception):  # the controller exits inside abort(): the call ends with an actor error
        ray.get(controller.abort.remote(), timeout=ABORT_TIMEOUT_S)


def loop_config(spec: TrialSpec, fidelity: Fidelity, data_dir: str, restore: str | None, trial_id: str,
                bucket: Bucket | None = None) -> dict[str, Any]:
    """What ``_worker_loop`` reads: the decoded trial, the checkpoint to start from, and the bucket it lies in."""
    return {"spec": spec, "fidelity": fidelity, "data_dir": data_dir, "restore": restore, "trial_id": trial_id,
            "bucket": bucket}


def _worker_loop(cfg: dict[str, Any]) -> None:
    """On every Train worker: the trial's loop, restored from this run's latest checkpoint after a worker-group
    restart, else from the checkpoint the Tune trial was given (its own, or a PBT donor's). ``cfg`` carries the
    trial already decoded (``tuner.trial.entry.decode``)."""
    import ray.train

    node = {"node_id": ray.get_runtime_context().get_node_id()}  # rank 0's reaches Tune

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        ray.train.report({**metrics, **node}, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir))

    own = ray.train.get_checkpoint()
    if own is None and cfg["restore"] is not None and cfg.get("bucket") is not None:  # a checkpoint in the bucket
        own = ray.train.Checkpoint(cfg["restore"], filesystem=cfg["bucket"].filesystem())
    with own.as_directory() if own is not None else contextlib.nullcontext(cfg["restore"]) as restore:
        try:
            fit(cfg["spec"], cfg["fidelity"], cfg["data_dir"], report, restore=restore, trial_id=cfg["trial_id"])
        except NonFiniteLossError as e:  # every rank sees the same losses: end the run cleanly, Tune gets the error
            ray.train.report({"nonfinite": str(e)})
