"""The Ray Tune function trainable of the LLM trial, and the one decoder of the config each trial receives.

The sweep's param space is the whole trial spec (model, data, train, resources) with the trial's hyperparameters
at their keys, plus ``run``: the prepared data, the fidelity and where sharded trials' Ray Train runs keep their
checkpoints. ``decode`` turns that into typed objects once; a single-process trial trains here, a sharded one
hands them to its Ray Train workers (``tuner.trial.workers``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from tuner._util.tree import python_value
from tuner.spec import TrialSpec
from tuner.spec.fidelity import Fidelity
from tuner.trial.checkpoint import load_checkpoint
from tuner.trial.loop import fit
from tuner.trial.workers import train_sharded


class TrialConfig(NamedTuple):
    spec: TrialSpec
    fidelity: Fidelity
    data_dir: str
    train_storage: str  # where a sharded trial's Ray Train runs write their checkpoints: a directory or a bucket URI
    storage_endpoint: str | None = None  # the bucket's S3-compatible endpoint, if any


def run_config(data_dir: Path | None, fidelity: Fidelity, train_storage: str,
               storage_endpoint: str | None = None) -> dict[str, Any]:
    """The ``run`` entry of the param space (what ``decode`` reads back)."""
    return {"data_dir": str(data_dir), "fidelity": fidelity.as_dict(), "train_storage": str(train_storage),
            "storage_endpoint": storage_endpoint}


def decode(config: dict[str, Any]) -> TrialConfig:
    config = python_value(config)  # some searchers suggest numpy scalars
    run = config["run"]
    return TrialConfig(TrialSpec.model_validate({k: config[k] for k in TrialSpec.model_fields}),
                       Fidelity(**run["fidelity"]), run["data_dir"], run["train_storage"], run.get("storage_endpoint"))


def data_on_this_node(trial: TrialConfig) -> str:
    """The sweep's tokenized corpus on this node's disk: the driver's copy where this node shares the driver's disk
    (one machine, a shared file system), else tokenized here once into the same cache path (a bucket-backed cluster's
    nodes share no disk); the content hash that names the directory is the same on every node."""
    if (Path(trial.data_dir) / "meta.json").is_file():
        return trial.data_dir
    from tuner.trial.data import prepare
    from tuner.trial.model import build_tokenizer

    data = trial.spec.data
    prepared = prepare(data.source, build_tokenizer(trial.spec.model), Path(trial.data_dir).parent,
                       val_fraction=data.val_fraction, text_field=data.text_field)
    if prepared.path != Path(trial.data_dir):
        raise RuntimeError(f"the corpus tokenized on this node ({prepared.path}) differs from the driver's "
                           f"({trial.data_dir}): data.source must name the same files on every node")
    return str(prepared.path)


def train_llm(config: dict[str, Any]) -> None:
    """The Ray Tune function trainable: one trial, in this process or sharded over a Ray Train worker group."""
    import ray
    from ray import tune

    trial = decode(config)
    if trial.spec.resources.workers_per_trial > 1:
        return train_sharded(trial.spec, trial.fidelity, trial.data_dir, trial.train_storage, trial.storage_endpoint)

    node = {"node_id": ray.get_runtime_context().get_node_id()}  # on a cluster: which node the trial ran on

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        tune.report({**metrics, **node}, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    restore = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = load_checkpoint(d)
    fit(trial.spec, trial.fidelity, data_on_this_node(trial), report, restore=restore,
        trial_id=tune.get_context().get_trial_id())
