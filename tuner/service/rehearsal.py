"""A cloud cluster config (``ray up`` YAML) rehearsed on this machine: Ray's own autoscaler adds and removes local
nodes of the config's node types, so a sweep sent to an empty GPU pool behaves as it would in the cloud, for free.

The node types' resources (GPUs as logical GPUs), min/max workers, the cluster's max_workers, upscaling speed and
idle timeout come from the given config itself; its provider, node configs, images and commands are left out. The
head starts with Ray's fake multi-node provider (``RAY_FAKE_CLUSTER=1``; ``tuner.service.rehearsal_provider``),
which starts each added node inside the autoscaler's monitor process.

Every node is on 127.0.0.1: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray from advertising the machine's network
address in place of the loopback. Jobs' drivers inherit it from the head; a driver that connects from outside
(``tuner run --address``) needs it too (``driver_env``). The head publishes the node types for tuner's placement
check, as ``tuner cluster publish`` does on a cloud head. What runs is recorded as ``tuner cluster up`` records its
cluster, so ``tuner cluster down`` stops it (the head's process group holds the added nodes too).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tuner._util.net import free_port
from tuner._util.node_types import from_cluster_config
from tuner.service import local_cluster
from tuner.service.local_cluster import Cluster, ClusterError, Node

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head's type
CONFIG_FILE = "autoscaling.yaml"
PROVIDER = "tuner.service.rehearsal_provider.RehearsalNodeProvider"
RECLAIM_DIR = "reclaim"


class ConfigError(ClusterError):
    """A cloud config that cannot be rehearsed (a usage error: exit 2)."""


def driver_env() -> dict[str, str]:
    """What a process connecting to a rehearsal cluster needs in its environment."""
    return dict(LOOPBACK_ENV)


def local_config(cloud: dict[str, Any], *, gcs_address: str, idle_timeout_minutes: float | None = None,
                 reclaim_dir: Path | None = None) -> dict:
    """The autoscaling config that rehearses ``cloud`` here (ValueError naming the key it cannot read)."""
    types = cloud.get("available_node_types")
    head = cloud.get("head_node_type")
    if not isinstance(types, dict) or head not in types:
        raise ValueError("head_node_type: must name one of available_node_types")
    worker_types = from_cluster_config(cloud)
    workers = {t.name: {"resources": t.resources, "node_config": {},
                        "min_workers": int(types[t.name].get("min_workers", 0)), "max_workers": t.max_workers}
               for t in worker_types}
    empty: dict[str, Any] = {k: [] for k in ("initialization_commands", "setup_commands", "head_setup_commands",
                                              "worker_setup_commands", "head_start_ray_commands",
                                              "worker_start_ray_commands", "cluster_synced_files", "rsync_exclude",
                                              "rsync_filter")}
    return {
        "cluster_name": f"{cloud.get('cluster_name', 'cluster')}-rehearsal",
        "max_workers": int(cloud.get("max_workers", sum(t.max_workers for t in worker_types))),
        "upscaling_speed": float(cloud.get("upscaling_speed", 1.0)),
        "idle_timeout_minutes": float(idle_timeout_minutes if idle_timeout_minutes is not None
                                      else cloud.get("idle_timeout_minutes", 5)),
        "provider": {"type": "external", "module": PROVIDER, "gcs_address": gcs_address, "launch_multiple": True,
                     "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True,
                     **({"reclaim_dir": str(reclaim_dir)} if reclaim_dir else {})},
        "available_node_types": {HEAD_TYPE: {"resources": dict(types[head].get("resources") or {}), "node_config": {},
                                             "max_workers": 0}, **workers},
        "head_node_type": HEAD_TYPE,
        "docker": {}, "file_mounts": {}, "file_mounts_sync_continuously": False, "auth": {"ssh_user": "rehearsal"},
        **empty,
    }


def rehearse(config_path: Path, *, state_dir: Path | None = None,
             idle_timeout_minutes: float | None = None) -> tuple[Cluster, dict]:
    """Start the head of a rehearsal of ``config_path`` (its worker nodes come as trials ask for them); the cluster
    and the local autoscaling config it runs."""
    try:
        cloud = yaml.safe_load(Path(config_path).read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {config_path}: {e}") from e
    d = state_dir or local_cluster.default_state_dir()
    local_cluster.refuse_if_up(d)
    port, dash = free_port(), free_port()
    cluster = Cluster(gcs=f"127.0.0.1:{port}", dashboard=f"http://127.0.0.1:{dash}")
    try:
        config = local_config(cloud, gcs_address=cluster.gcs, idle_timeout_minutes=idle_timeout_minutes,
                              reclaim_dir=d / RECLAIM_DIR)
    except (ValueError, TypeError, AttributeError) as e:
        raise ConfigError(f"{config_path}: {e}") from e
    shutil.rmtree(d / RECLAIM_DIR, ignore_errors=True)  # requests left from an earlier cluster are not this one's
    (d / RECLAIM_DIR).mkdir(parents=True)
    # The head's temp dir, and the added nodes' under it, are the rehearsal's own (not /tmp/ray, which every other Ray
    # on the machine shares: its session_latest link and current-cluster file), and `down` removes them.
    cluster.temp_dirs.append(tempfile.mkdtemp(prefix="tuner-r-"))  # short: Unix socket paths live there
    config["provider"]["nodes_temp_dir"] = cluster.temp_dirs[0]
    local_cluster.ensure_token()
    (d / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    head_resources = config["available_node_types"][HEAD_TYPE]["resources"]
    args = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dash), "--autoscaling-config", str(d / CONFIG_FILE),
            "--num-cpus", local_cluster.num(head_resources.get("CPU", 0)),
            "--num-gpus", local_cluster.num(head_resources.get("GPU", 0)), "--temp-dir", cluster.temp_dirs[0],
            *local_cluster.node_ports()]
    log = d / "head.log"
    head = local_cluster.start(args, log, extra_env={"RAY_FAKE_CLUSTER": "1", **LOOPBACK_ENV})
    cluster.nodes.append(Node("head", head.pid, str(log), head_resources, int(args[args.index("--node-manager-port")
                                                                                   + 1])))
    local_cluster.save(cluster, d)
    try:
        local_cluster.wait_for(head, log, lambda: local_cluster.dashboard_up(cluster.dashboard), "the head")
        _publish(cluster.gcs, d / CONFIG_FILE)
    except BaseException:
        local_cluster.down(d)
        raise
    return cluster, config


def _publish(gcs: str, config: Path) -> None:
    """The node types, for the placement check of every driver (``tuner cluster publish``, in its own process: this
    one need not stay a Ray driver)."""
    try:
        r = subprocess.run([sys.executable, "-m", "tuner", "cluster", "publish", str(config), "--address", gcs],
                           env={**local_cluster.ray_env(), **LOOPBACK_ENV}, capture_output=True, text=True,
                           timeout=120)
    except subprocess.TimeoutExpired as e:
        raise ClusterError("could not publish the node types: no answer from the head in 120 s") from e
    if r.returncode != 0:
        raise ClusterError(f"could not publish the node types: {local_cluster.last_line(r.stderr)}")


def reclaim(node_id: str | None = None, *, state_dir: Path | None = None) -> None:
    """Have the rehearsal's provider kill a worker node (``node_id``, else any one) outright, as a cloud reclaims a
    spot instance: within one autoscaler update (5 s)."""
    from tuner.service.rehearsal_provider import ANY

    d = state_dir or local_cluster.default_state_dir()
    folder = d / RECLAIM_DIR
    if not folder.is_dir() or not any(local_cluster.alive(n.pid) for n in local_cluster.load(d).nodes):
        raise ClusterError(f"no rehearsal is up at {d} (`tuner cluster rehearse CONFIG` starts one)")
    (folder / (node_id or ANY)).touch()
