"""Before any trial starts: can the cluster place one trial's workers at all, and how many trials fit at once.

Ray leaves an unplaceable request PENDING forever (ray-project/ray#38505); a sweep fails fast instead, naming the
request and the largest node. On an autoscaling cluster the nodes that could be added count too: the worker node
types its head published (``tuner._util.node_types``), each up to its ``max_workers``, so a sweep sent to an empty
GPU pool is refused only if no node type could ever hold its trial. Sharded trials reserve their workers through Ray
Train, not through Tune, so Tune cannot see their size: their concurrency is capped at the number of whole trials
the cluster holds at once (at full scale, on an autoscaling one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from tuner._util.node_types import NodeType, published
from tuner.spec import Spec, SpecError

SKIP_ENV = "TUNER_SKIP_PLACEMENT_CHECK"  # an escape hatch: a cluster whose node types tuner cannot read


def worker_bundle(spec: Spec) -> dict[str, float]:
    r = spec.resources
    return {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})}


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def _fits(node: dict[str, float], bundle: dict[str, float]) -> int:
    return min(math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in bundle.items() if v > 0)


def trials_at_once(nodes: list[dict[str, float]], bundle: dict[str, float], workers: int,
                   types: Sequence[NodeType] = ()) -> int:
    """Whole trials (``workers`` bundles each, on any nodes) the nodes, and the nodes the autoscaler may add of each
    type, hold at once."""
    fits = sum(_fits(node, bundle) for node in nodes) + sum(_fits(t.resources, bundle) * t.max_workers for t in types)
    return fits // workers


def fit_to_cluster(spec: Spec, nodes: list[dict[str, float]] | None = None,
                   types: Sequence[NodeType] | None = None) -> Spec:
    """Raise SpecError (exit 2) if no trial can ever be placed; cap a sharded sweep's concurrency to what fits."""
    if os.environ.get(SKIP_ENV):
        return spec
    if nodes is None:  # the connected cluster's
        nodes, types = alive_nodes(), published() if types is None else types
    types = types or ()
    r, bundle = spec.resources, worker_bundle(spec)
    n = trials_at_once(nodes, bundle, r.workers_per_trial, types)
    if n == 0:
        raise SpecError([("resources", _unplaceable(spec, nodes, types, bundle))])
    if r.workers_per_trial == 1:
        return spec  # Tune reserves single-worker trials itself and runs what fits
    cap = min(spec.search.max_concurrent or n, n)
    return spec.model_copy(update={"search": spec.search.model_copy(update={"max_concurrent": cap})})


def _unplaceable(spec: Spec, nodes: list[dict[str, float]], types: Sequence[NodeType],
                 bundle: dict[str, float]) -> str:
    r = spec.resources
    most = trials_at_once(nodes, bundle, 1, types)

    def size(resources: dict[str, Any]) -> tuple[float, float]:
        return resources.get("GPU", 0.0), resources.get("CPU", 0.0)

    largest: dict[str, Any] = max(nodes, key=size, default={})
    where = f"this cluster ({len(nodes)} node{'s' * (len(nodes) != 1)}"
    if types:
        biggest = max(types, key=lambda t: size(t.resources))
        largest = max(largest, biggest.resources, key=size)
        where += f", and up to {sum(t.max_workers for t in types)} more of {len(types)} autoscaling node type"
        where += "s" * (len(types) != 1)
    shown = {k: largest.get(k, 0.0) for k in ("CPU", "GPU")}
    largest_what = "node or node type" if types else "node"
    return (f"a trial needs {r.workers_per_trial} worker{'s' * (r.workers_per_trial > 1)} x {_fmt(bundle)} "
            f"({r.placement}), but {where}) holds at most {most} such worker{'s' * (most != 1)}; its largest "
            f"{largest_what} has {_fmt(shown)}. Lower resources.workers_per_trial, cpus_per_worker or "
            f"gpus_per_worker, or add nodes (or a larger node type)")


def _fmt(resources: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"
