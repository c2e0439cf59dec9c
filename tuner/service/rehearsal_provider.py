"""The node provider of ``tuner cluster rehearse``: Ray's fake multi-node provider (each added node is started inside
the autoscaler's monitor process, on this machine), with each node in its own temp dir, as on its own machine, and
spot reclaims: a file in the provider's ``reclaim_dir`` named after a node id (or ``any``) makes the provider
terminate that node (or one worker node) the next time the autoscaler asks it for its nodes, as a cloud takes back a
spot instance (``tuner cluster reclaim`` writes it): at once, every process on it SIGKILLed, as when a machine is
lost. Nothing on it stops cleanly or tells the head it goes; the head learns it from missed health checks. (A node
the autoscaler scales down stops cleanly.) The provider lives in the monitor process: a file is how another process
reaches it.

Ray's provider starts every node in the head's session dir. Nodes sharing one unpack a job's working dir into the
same place, and one node's runtime-env agent removes it under the others: a sweep submitted with ``tuner submit``
then loses its trials' working directory (seen here: a trial worker that could not load torch, and the driver's
``FileNotFoundError`` from its deleted cwd). This module is imported by the monitor, so it imports only Ray.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from typing import Any

import ray
from ray._private import ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

ANY = "any"


class RehearsalNodeProvider(FakeMultiNodeProvider):
    def non_terminated_nodes(self, tag_filters: dict) -> list[str]:
        self._reclaim()
        return super().non_terminated_nodes(tag_filters)

    def _reclaim(self) -> None:
        folder = self.provider_config.get("reclaim_dir")
        if not folder or not os.path.isdir(folder):
            return
        for name in os.listdir(folder):
            with self.lock:
                workers = [n for n, v in self._nodes.items() if v["tags"].get(TAG_RAY_NODE_KIND) == NODE_KIND_WORKER]
            for node_id in workers[:1] if name == ANY else [n for n in workers if n == name]:
                print(f"reclaiming node {node_id}", flush=True)  # the monitor's log
                self._nodes[node_id]["reclaimed"] = True  # type: ignore[assignment]
                self.terminate_node(node_id)
            os.remove(os.path.join(folder, name))

    def _create_node_with_resources_and_labels(self, node_config: dict, tags: dict, count: int,
                                               resources: dict, labels: dict) -> None:
        resources = copy.deepcopy(resources)
        with self.lock:
            node_type = tags[TAG_RAY_USER_NODE_TYPE]
            node_id = self._next_hex_node_id()
            # Short: Unix socket paths live there. Under the rehearsal's own dir, which `tuner cluster down` removes.
            temp_dir = tempfile.mkdtemp(prefix="node-", dir=self.provider_config.get("nodes_temp_dir"))
            params = ray._private.parameter.RayParams(
                min_worker_port=0, max_worker_port=0, dashboard_port=None, dashboard_agent_listen_port=0,
                num_cpus=resources.pop("CPU", 0), num_gpus=resources.pop("GPU", 0),
                object_store_memory=resources.pop("object_store_memory", None), resources=resources, labels=labels,
                redis_address=self._gcs_address, gcs_address=self._gcs_address, temp_dir=temp_dir,
                env_vars={"RAY_OVERRIDE_NODE_ID_FOR_TESTING": node_id, "RAY_CLOUD_INSTANCE_ID": node_id,
                          "RAY_NODE_TYPE_NAME": node_type,
                          ray_constants.RESOURCES_ENVIRONMENT_VARIABLE: json.dumps(resources),
                          ray_constants.LABELS_ENVIRONMENT_VARIABLE: json.dumps(labels)})
            node = ray._private.node.Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
            self._nodes[node_id] = {"tags": {TAG_RAY_NODE_KIND: NODE_KIND_WORKER, TAG_RAY_USER_NODE_TYPE: node_type,
                                             TAG_RAY_NODE_NAME: node_id, TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
                                             **tags},
                                    "node": node, "temp_dir": temp_dir}  # type: ignore[dict-item]

    def _terminate_node(self, node: dict[str, Any]) -> None:
        if node.get("reclaimed"):
            node["node"].kill_all_processes(check_alive=False, allow_graceful=False)
        else:  # scaled down: the node stops cleanly
            super()._terminate_node(node)
        if node.get("temp_dir"):
            shutil.rmtree(node["temp_dir"], ignore_errors=True)
