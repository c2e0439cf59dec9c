"""An autoscaling cluster's worker node types, where every driver on the cluster can read them.

Ray 2.60's autoscaler keeps its config to itself: the GCS slot Ray reserves for it (``get_cluster_config()``) stays
empty under both autoscaler versions unless something reports one, so a driver sees only the nodes that are up. The
head publishes the node types of its ``ray up`` config once (``tuner cluster publish``, or ``tuner cluster rehearse``
itself) into the GCS key-value store; the placement check reads them. A head with no ``ray up`` config (a KubeRay
head) names them in its environment instead (``TUNER_NODE_TYPES``, which its job drivers inherit); and Ray's own slot
counts where something fills it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

KV_NAMESPACE = "tuner"
KV_KEY = "autoscaler_node_types"
UNLIMITED = 10**6  # Ray's max_count of -1
ENV = "TUNER_NODE_TYPES"  # JSON in a ray up config's available_node_types layout: {name: {resources, max_workers}}


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
        try:
            resources = {k: float(v) for k, v in t["resources"].items()}
        except (TypeError, ValueError):
            raise ValueError(f"available_node_types.{name}.resources: amounts must be numbers") from None
        most = t.get("max_workers", cluster_max if cluster_max is not None else 0)
        if not isinstance(most, int) or isinstance(most, bool) or most < 0:
            raise ValueError(f"available_node_types.{name}.max_workers: a whole number >= 0 is required")
        if cluster_max is not None:
            most = min(most, cluster_max)
        out.append(NodeType(name, resources, most))
    return out


def from_env() -> list[NodeType]:
    """The node types named in ``TUNER_NODE_TYPES``, if set. ValueError naming the problem."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return []
    try:
        types = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None
    try:
        return from_cluster_config({"available_node_types": types})
    except ValueError as e:  # its keys are those under available_node_types
        raise ValueError(str(e).removeprefix("available_node_types: ").removeprefix("available_node_types.")) from None


def publish(types: list[NodeType]) -> None:
    """Into the connected cluster's GCS (``ray.init`` first)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(KV_KEY, json.dumps([asdict(t) for t in types]), overwrite=True, namespace=KV_NAMESPACE)


def published() -> list[NodeType]:
    """The connected cluster's worker node types: those this process's environment names (it overrides the cluster),
    else tuner's published ones, else Ray's cluster config where something reported one (a later Ray); none on a
    cluster that does not autoscale. ValueError for a ``TUNER_NODE_TYPES`` that is not valid."""
    from ray.experimental.internal_kv import _internal_kv_get

    if named := from_env():
        return named
    raw = _internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    if raw:
        return [NodeType(**t) for t in json.loads(raw)]
    from ray._private.state import state

    config = state.get_cluster_config()
    if config is None:
        return []
    return [NodeType(g.name, {k: float(v) for k, v in g.resources.items()},
                     UNLIMITED if g.max_count < 0 else g.max_count) for g in config.node_group_configs if g.max_count]
