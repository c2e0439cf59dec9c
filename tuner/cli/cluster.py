"""``tuner cluster up|rehearse|down|status``: a multi-node Ray cluster on this machine (tuner.service.local_cluster),
or a cloud config's autoscaling cluster rehearsed here (tuner.service.rehearsal); ``tuner cluster publish``: an
autoscaling head's node types, for the placement check (tuner._util.node_types)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from tuner._util import node_types
from tuner.cli.options import USAGE, fail, out
from tuner.service import local_cluster, rehearsal

cluster_app = typer.Typer(no_args_is_help=True, help="A head and N worker nodes on this machine (127.0.0.1), for "
                                                     "trying cluster flows and testing placement and node loss.")
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="Where the cluster is recorded (default: "
                                                                   "TUNER_CLUSTER_DIR, else ~/.tuner/local-cluster).")]


@cluster_app.command("up")
def cluster_up(workers: Annotated[int, typer.Option("--workers", min=0, help="Worker nodes.")] = 2,
               cpus_per_worker: Annotated[float, typer.Option("--cpus-per-worker", min=0)] = 1.0,
               gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0,
                                                              help="Logical GPUs per worker node (placement tests "
                                                                   "need no CUDA).")] = 0.0,
               head_cpus: Annotated[float, typer.Option("--head-cpus", min=0, help="CPUs the head offers trials; "
                                                        "0 (the default) keeps it for drivers only.")] = 0.0,
               state_dir: StateOpt = None) -> None:
    """Start the cluster; prints the addresses to submit to."""
    try:
        c = local_cluster.up(workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                             head_cpus=head_cpus, state_dir=state_dir)
    except local_cluster.ClusterError as e:
        fail(str(e))
    out.print(f"head {c.gcs} (driver-only: {head_cpus == 0}) + {workers} worker(s) x "
              f"{{CPU: {cpus_per_worker:g}, GPU: {gpus_per_worker:g}}}", highlight=False)
    out.print(f"export RAY_AUTH_MODE=token   # the token is in ~/.ray/auth_token\n"
              f"tuner submit SPEC --address {c.dashboard}\n"
              f"ray job submit --address {c.dashboard} --working-dir DIR -- python -m tuner run SPEC\n"
              f"tuner run SPEC --address {c.gcs}", highlight=False)


@cluster_app.command("rehearse")
def cluster_rehearse(config: Annotated[Path, typer.Argument(help="A `ray up` cluster config, e.g. "
                                                                  "cluster/aws-gpu.yaml.")],
                     idle_timeout_minutes: Annotated[float | None, typer.Option(
                         "--idle-timeout-minutes", min=0, help="Override the config's idle_timeout_minutes.")] = None,
                     state_dir: StateOpt = None) -> None:
    """Start a local autoscaling cluster with the config's node types (GPUs as logical GPUs): worker nodes come and
    go as trials ask for them, as in the cloud. `tuner cluster down` stops it."""
    try:
        c, config_used = rehearsal.rehearse(config, state_dir=state_dir, idle_timeout_minutes=idle_timeout_minutes)
    except rehearsal.ConfigError as e:
        fail(str(e), USAGE)
    except local_cluster.ClusterError as e:
        fail(str(e))
    for name, t in config_used["available_node_types"].items():
        if name != rehearsal.HEAD_TYPE:
            out.print(f"node type {name}: {_resources(t['resources'])}, {t['min_workers']}-{t['max_workers']} workers",
                      highlight=False)
    out.print(f"head {c.gcs}; idle nodes go after {config_used['idle_timeout_minutes']:g} min", highlight=False)
    env = " ".join(f"{k}={v}" for k, v in rehearsal.driver_env().items())
    out.print(f"export RAY_AUTH_MODE=token {env}\n"
              f"tuner submit SPEC --address {c.dashboard}\n"
              f"tuner run SPEC --address {c.gcs}", highlight=False)


@cluster_app.command("reclaim")
def cluster_reclaim(node: Annotated[str | None, typer.Option("--node", help="The node id (default: any worker "
                                                                          "node).")] = None,
                    state_dir: StateOpt = None) -> None:
    """Take a worker node of a rehearsal away, as a cloud reclaims a spot instance: its provider kills it outright."""
    try:
        rehearsal.reclaim(node, state_dir=state_dir)
    except local_cluster.ClusterError as e:
        fail(str(e))
    out.print(f"the provider terminates {node or 'a worker node'} at the autoscaler's next update", highlight=False)


@cluster_app.command("publish")
def cluster_publish(config: Annotated[Path, typer.Argument(help="The cluster's `ray up` config (on a head: "
                                                                  "~/ray_bootstrap_config.yaml).")],
                    address: Annotated[str, typer.Option("--address", help="The head's GCS address (auto: the "
                                                                          "Ray on this machine).")] = "auto") -> None:
    """Tell every driver on the cluster its autoscaling node types, so the placement check counts the nodes the
    autoscaler may add (run once on the head, after `ray start`)."""
    import yaml

    try:
        types = node_types.from_cluster_config(yaml.safe_load(config.read_text()) or {})
    except (OSError, yaml.YAMLError, ValueError, TypeError, AttributeError) as e:
        fail(f"{config}: {e}", USAGE)
    import ray

    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - any connection failure is one line
        fail(f"cannot connect to the Ray cluster at {address}: {e}")
    try:
        node_types.publish(types)
    except Exception as e:  # noqa: BLE001 - any failure of the store is one line
        fail(f"could not publish the node types to {address}: {e}")
    finally:
        ray.shutdown()
    for t in types:
        out.print(f"published node type {t.name}: {_resources(t.resources)} x {t.max_workers}", highlight=False)


@cluster_app.command("down")
def cluster_down(state_dir: StateOpt = None) -> None:
    """Stop the nodes `up` started, and only those."""
    out.print(f"stopped {local_cluster.down(state_dir)} node(s)", highlight=False)


@cluster_app.command("status")
def cluster_status(state_dir: StateOpt = None) -> None:
    """The recorded cluster's addresses and whether each node runs."""
    try:
        c, alive = local_cluster.status(state_dir)
    except local_cluster.ClusterError as e:
        fail(str(e))
    out.print(f"head {c.gcs}, dashboard {c.dashboard}", highlight=False)
    for n, up_ in zip(c.nodes, alive, strict=True):
        out.print(f"  {n.role:6} pid {n.pid:<7} {_resources(n.resources)}  {'up' if up_ else 'DOWN'}", highlight=False)
    if not all(alive):
        raise typer.Exit(1)


def _resources(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources.items()) + "}"
