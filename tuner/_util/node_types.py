"""An autoscaling cluster's worker node types, where every driver on the cluster can read them.

Ray 2.60's autoscaler keeps its config to itself: the GCS slot Ray reserves for it (``get_cluster_config()``) stays
empty under both autoscaler versions unless something reports one, so a driver sees only the nodes that are up. The
head publishes the node types of its ``ray up`` config once (``tuner cluster publish``, or ``tuner cluster rehearse``
itself) into the GCS key-value store; the placement check reads them, and Ray's own slot where something fills it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

KV_NAMESPACE = "tuner"
KV_KEY = "autoscaler_node_types"
UNLIMITED = 10**6  # Ray's max_count of -1


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]
    max_workers: int  # nodes of this type the autoscaler may add


def from_cluster_config(config: dict[str, Any]) -> list[NodeType]:
    """The worker node types of a ``ray up`` cluster config: every type but the head's, each capped by the cluster's
    ``max_workers``. ValueError naming the key for a config that has none."""
    types = config.get("available_node_types")
    if not isinstance(types, dict) or not types:
        raise ValueError("available_node_types: a mapping of node types is required")
    cluster_max = config.get("max_workers")
    out = []
    for name, t in types.items():
        if name == config.get("head_node_type"):
            continue
        if not isinstance(t, dict) or not isinstance(t.get("resources"), dict):
            raise ValueError(f"available_node_types.{name}.resources: a mapping of resources is required")
        most = t.get("max_workers", cluster_max if cluster_max is not None else 0)
        if cluster_max is not None:
            most = min(most, cluster_max)
        out.append(NodeType(name, {k: float(v) for k, v in t["resources"].items()}, int(most)))
    return out


def publish(types: list[NodeType]) -> None:
    """Into the connected cluster's GCS (``ray.init`` first)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(KV_KEY, json.dumps([asdict(t) for t in types]), overwrite=True, namespace=KV_NAMESPACE)


def published() -> list[NodeType]:
    """The connected cluster's worker node types: tuner's published ones, else Ray's cluster config where something
    reported one (KubeRay's autoscaler, a later Ray); none on a cluster that does not autoscale."""
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    if raw:
        return [NodeType(**t) for t in json.loads(raw)]
    from ray._private.state import state

    config = state.get_cluster_config()
    if config is None:
        return []
    return [NodeType(g.name, {k: float(v) for k, v in g.resources.items()},
                     UNLIMITED if g.max_count < 0 else g.max_count) for g in config.node_group_configs if g.max_count]
