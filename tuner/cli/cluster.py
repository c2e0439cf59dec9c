"""``tuner cluster up|down|status``: a multi-node Ray cluster on this machine (tuner.service.local_cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.cli.options import fail, out
from tuner.service import local_cluster

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
        res = ", ".join(f"{k}: {v:g}" for k, v in n.resources.items())
        out.print(f"  {n.role:6} pid {n.pid:<7} {{{res}}}  {'up' if up_ else 'DOWN'}", highlight=False)
    if not all(alive):
        raise typer.Exit(1)
