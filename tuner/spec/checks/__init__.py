"""Cross-field checks of a sweep spec: everything the schema alone cannot say. Each check returns (dotted key,
message) pairs; ``cross_checks`` runs them all so that one ``tuner validate`` reports every problem."""

from __future__ import annotations

from typing import Any

from tuner._util import storage
from tuner.spec.checks.search import check_search
from tuner.spec.checks.sections import (
    check_batch,
    check_data,
    check_model,
    check_pretrained,
    check_resources,
    check_train,
)
from tuner.spec.checks.trainable import check_trainable, load_trainable
from tuner.spec.schema import Problem, Spec

__all__ = ["cross_checks", "load_trainable"]


def cross_checks(spec: Spec, raw: dict[str, Any]) -> list[Problem]:
    given = {k: v for k, v in raw.items() if isinstance(v, dict)}
    out: list[Problem] = []
    if storage.is_remote(spec.storage):
        problem = storage.malformed(spec.storage)
        out += [("storage", problem)] if problem else []
    else:
        out += _check_storage_path(spec)
        if spec.storage_endpoint:
            out.append(("storage_endpoint", "names an S3-compatible server for a bucket; storage is a local path"))
    if spec.is_custom:
        out += [(k, "not used with trainable (a custom objective replaces model/data/train)")
                for k in ("model", "data", "train") if k in raw]
        out += check_trainable(spec)
    else:
        out += check_model(spec.model, given.get("model", {}))
        out += check_pretrained(spec)
        out += check_train(spec.train, given.get("train", {}))
        out += check_data(spec.data)
    out += check_resources(spec.resources)
    if not spec.is_custom:
        out += check_batch(spec, given.get("train", {}))
    elif spec.resources.workers_per_trial > 1:
        out.append(("resources.workers_per_trial", "a custom trainable runs in one process; sharded trials (more "
                                                   "than 1 worker) are for the LLM trial"))
    out += check_search(spec, given.get("search", {}))
    out += _check_tracking(spec)
    if spec.budget.gpu_hours is not None and spec.resources.gpus_per_worker == 0:
        out.append(("budget.gpu_hours", "the trials use no GPU (resources.gpus_per_worker is 0): this limit would "
                                        "never be reached; use budget.cpu_hours or budget.wall_clock"))
    return out


def _check_storage_path(spec: Spec) -> list[Problem]:
    """A storage path that names a file (or runs through one) can hold no sweep: say so now, not at run time."""
    from pathlib import Path

    path = Path(spec.storage).expanduser()
    for p in (path, *path.parents):
        if p.exists():
            return [] if p.is_dir() else [("storage", f"{spec.storage!r}: {p} is a file, not a directory")]
    return []


def _check_tracking(spec: Spec) -> list[Problem]:
    """A tracker the spec names must be installed (its optional extra): say so now, not after the first trial."""
    import importlib.util

    return [(f"tracking.{name}", f"the {module} package is not installed: pip install 'tuner[{name}]'")
            for name, module in (("wandb", "wandb"), ("mlflow", "mlflow"))
            if getattr(spec.tracking, name) is not None and importlib.util.find_spec(module) is None]
