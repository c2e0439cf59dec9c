"""Before any trial starts: can the cluster place one trial's workers at all, and how many trials fit at once.

Ray leaves an unplaceable request PENDING forever (ray-project/ray#38505); a sweep fails fast instead, naming the
request and the largest node. Sharded trials reserve their workers through Ray Train, not through Tune, so Tune
cannot see their size: their concurrency is capped at the number of whole trials the cluster holds at once.
"""

from __future__ import annotations

import math
import os
from typing import Any

from tuner.spec import Spec, SpecError

SKIP_ENV = "TUNER_SKIP_PLACEMENT_CHECK"  # autoscaling clusters whose worker nodes are not up yet


def worker_bundle(spec: Spec) -> dict[str, float]:
    r = spec.resources
    return {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})}


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def trials_at_once(nodes: list[dict[str, float]], bundle: dict[str, float], workers: int) -> int:
    """Whole trials (``workers`` bundles each, on any nodes) the nodes hold at once."""
    fits = [min(math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in bundle.items() if v > 0) for node in nodes]
    return sum(fits) // workers


def fit_to_cluster(spec: Spec, nodes: list[dict[str, float]] | None = None) -> Spec:
    """Raise SpecError (exit 2) if no trial can ever be placed; cap a sharded sweep's concurrency to what fits."""
    if os.environ.get(SKIP_ENV):
        return spec
    nodes = alive_nodes() if nodes is None else nodes
    r, bundle = spec.resources, worker_bundle(spec)
    n = trials_at_once(nodes, bundle, r.workers_per_trial)
    if n == 0:
        raise SpecError([("resources", _unplaceable(spec, nodes, bundle))])
    if r.workers_per_trial == 1:
        return spec  # Tune reserves single-worker trials itself and runs what fits
    cap = min(spec.search.max_concurrent or n, n)
    return spec.model_copy(update={"search": spec.search.model_copy(update={"max_concurrent": cap})})


def _unplaceable(spec: Spec, nodes: list[dict[str, float]], bundle: dict[str, float]) -> str:
    r = spec.resources
    largest: dict[str, Any] = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    shown = {k: largest.get(k, 0.0) for k in ("CPU", "GPU")}
    most = trials_at_once(nodes, bundle, 1)
    return (f"a trial needs {r.workers_per_trial} worker{'s' * (r.workers_per_trial > 1)} x {_fmt(bundle)} "
            f"({r.placement}), but this cluster ({len(nodes)} node{'s' * (len(nodes) != 1)}) holds at most {most} "
            f"such worker{'s' * (most != 1)}; its largest node has {_fmt(shown)}. Lower resources.workers_per_trial, "
            f"cpus_per_worker or gpus_per_worker, or add nodes ({SKIP_ENV}=1 skips this check on an autoscaling "
            f"cluster)")


def _fmt(resources: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"
