"""Before any trial starts: can the cluster place one trial's workers at all, and how many trials fit at once.

Ray leaves an unplaceable request PENDING forever (ray-project/ray#38505); a sweep fails fast instead, naming the
request and the largest node. On an autoscaling cluster the nodes that could be added count too: the worker node
types its head published (``tuner._util.node_types``), each up to its ``max_workers``, so a sweep sent to an empty
GPU pool is refused only if no node type could ever hold its trial. Sharded trials reserve their workers through Ray
Train, not through Tune, so Tune cannot see their size: their concurrency is capped at the number of whole trials
the cluster holds at once (at full scale, on an autoscaling one: an upper bound, since nodes already up count again
in their type's max_workers; the trials beyond it wait for nodes). ``placement: spread`` is strict (each worker of a
trial on its own node), so that an autoscaler adds the nodes rather than stacking the workers on the first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from tuner._util import node_types
from tuner._util.node_types import NodeType
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
                   types: Sequence[NodeType] = (), spread: bool = False) -> int:
    """Whole trials (``workers`` bundles each: on any nodes, or each on its own node when ``spread``) the nodes, and
    the nodes the autoscaler may add of each type, hold at once."""
    fits = [(_fits(node, bundle), 1) for node in nodes] + [(_fits(t.resources, bundle), t.max_workers) for t in types]
    most = sum(f * count for f, count in fits) // workers
    if not spread:
        return most

    def holds(trials: int) -> bool:  # a node takes at most one worker of each trial
        return sum(min(f, trials) * count for f, count in fits) >= trials * workers

    low, high = 0, most  # the largest number of trials it holds: holds() is monotone
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if holds(mid) else (low, mid - 1)
    return low


def nodes_that_fit(nodes: list[dict[str, float]], bundle: dict[str, float], types: Sequence[NodeType] = ()) -> int:
    """The nodes (up, or that the autoscaler may add) that hold at least one ``bundle``."""
    return sum(_fits(node, bundle) > 0 for node in nodes) + sum(t.max_workers for t in types
                                                                if _fits(t.resources, bundle) > 0)


def fit_to_cluster(spec: Spec, nodes: list[dict[str, float]] | None = None,
                   types: Sequence[NodeType] | None = None) -> Spec:
    """Raise SpecError (exit 2) if no trial can ever be placed; cap a sharded sweep's concurrency to what fits."""
    if os.environ.get(SKIP_ENV):
        return spec
    if nodes is None:  # the connected cluster's
        nodes = alive_nodes()
        if types is None:
            try:
                types = node_types.published()
            except ValueError as e:
                raise SpecError([(node_types.ENV, str(e))], source="environment") from None
    types = types or ()
    r, bundle = spec.resources, worker_bundle(spec)
    n = trials_at_once(nodes, bundle, r.workers_per_trial, types, spread=r.placement == "spread")
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
    holds = f"holds at most {most} such worker{'s' * (most != 1)}"
    if r.placement == "spread" and most >= r.workers_per_trial:  # enough room, too few nodes
        fit = nodes_that_fit(nodes, bundle, types)
        holds = f"has {fit} node{'s' * (fit != 1)} that hold{'s' * (fit == 1)} one, and spread puts each on its own"
    return (f"a trial needs {r.workers_per_trial} worker{'s' * (r.workers_per_trial > 1)} x {_fmt(bundle)} "
            f"({r.placement}), but {where}) {holds}; its largest {largest_what} has {_fmt(shown)}. Lower "
            f"resources.workers_per_trial, cpus_per_worker or gpus_per_worker, or add nodes (or a larger node type)")


def _fmt(resources: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"
