"""A multi-node Ray cluster on this machine: a head and N worker nodes, each its own ``ray start --block`` process
on 127.0.0.1 (token auth on, as Ray defaults), for trying a cluster flow or testing placement and node loss.

Every node gets its own ports (a local Ray or another cluster may hold Ray's defaults), and its ``ray start``
process is the leader of its own process group: stopping that process stops the node's processes and nothing else,
so ``down`` leaves every other Ray on the machine alone (``ray stop`` would not). What ``up`` started is recorded in
``<state_dir>/cluster.json``.

Ray advertises each node at the machine's network address even when started with ``--node-ip-address 127.0.0.1``
(it resolves the loopback, so that other machines could join; a loopback-only Ray refuses a second node); the
dashboard and the Jobs API stay on 127.0.0.1.

By default the head is driver-only (0 CPUs): sweep drivers (Ray jobs) and Ray Train controllers run there, trials
only on the workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuner._util.net import free_port

STATE_FILE = "cluster.json"
START_TIMEOUT_S = 90.0
# For `ray start --block` to stop its node on SIGTERM (a clean stop takes 1-3 s here); then the node's whole process
# group is killed. A node that ran a stopped job's sharded trial can keep a process that outlives SIGTERM, and a local
# cluster being torn down has nothing left to lose.
STOP_TIMEOUT_S = 5.0


class ClusterError(RuntimeError):
    """A cluster that cannot be started, or no cluster where one was expected (one line)."""


def default_state_dir() -> Path:
    return Path(os.environ.get("TUNER_CLUSTER_DIR") or Path.home() / ".tuner" / "local-cluster")


@dataclass
class Node:
    role: str  # head | worker
    pid: int  # its `ray start --block` process, leader of the node's process group
    log: str
    resources: dict[str, float]
    node_manager_port: int


@dataclass
class Cluster:
    gcs: str  # 127.0.0.1:PORT: ray.init(address=...), tuner run --address
    dashboard: str  # http://127.0.0.1:PORT: tuner submit --address, ray job submit --address
    nodes: list[Node] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)  # the worker nodes' own

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]


def _ray() -> str:
    """The `ray` of the Python running tuner (a venv's), not whichever is first on PATH."""
    candidate = Path(sys.executable).parent / "ray"
    return str(candidate) if candidate.is_file() else "ray"


def node_ports() -> list[str]:
    # Each node's own: two nodes (or another local Ray) on one machine cannot share an agent's port.
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


def ray_env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "token",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    return env


def ensure_token() -> None:
    """`ray start --head` with token auth refuses to start without a token (ray.init() makes one for the local Ray it
    starts): make one as `ray get-auth-token --generate` does, where neither the environment nor ~/.ray holds one."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    if (Path.home() / ".ray" / "auth_token").is_file():
        return
    r = subprocess.run([_ray(), "get-auth-token", "--generate"], env=ray_env(), capture_output=True, text=True)
    if r.returncode != 0:  # its stdout is the token itself: never shown
        raise ClusterError(f"could not generate a Ray auth token: {last_line(r.stderr)}")


def last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no output)"


def start(args: list[str], log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`ray start --block` as the leader of its own process group, which holds every process of the node."""
    with open(log, "w") as f:
        return subprocess.Popen([_ray(), "start", "--block", "--disable-usage-stats", *args],
                                env={**ray_env(), **(extra_env or {})}, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _port_of(args: list[str], flag: str) -> int:
    return int(args[args.index(flag) + 1])


def wait_for(proc: subprocess.Popen[bytes], log: Path, ready: Any, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise ClusterError(f"{what} exited: {_tail(log)}")
        time.sleep(0.5)
    _stop_groups([proc.pid])
    raise ClusterError(f"{what} did not start within {START_TIMEOUT_S:.0f} s: {_tail(log)}")


def _tail(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
    return " | ".join(lines[-3:]) or "(no output)"


def dashboard_up(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/api/version", timeout=2)  # noqa: S310 - loopback only
        return True
    except urllib.error.HTTPError:  # it answered (401 without a token): it is up
        return True
    except OSError:
        return False


def up(workers: int = 2, *, cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, head_cpus: float = 0.0,
       state_dir: Path | None = None) -> Cluster:
    """Start a head and ``workers`` worker nodes; GPUs are logical (no CUDA needed) for placement tests."""
    d = state_dir or default_state_dir()
    refuse_if_up(d)
    d.mkdir(parents=True, exist_ok=True)
    ensure_token()
    port, dash = free_port(), free_port()
    head_args = ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", str(dash), "--num-cpus", num(head_cpus), "--num-gpus", "0", *node_ports()]
    cluster = Cluster(gcs=f"127.0.0.1:{port}", dashboard=f"http://127.0.0.1:{dash}")
    try:
        log = d / "head.log"
        head = start(head_args, log)
        cluster.nodes.append(Node("head", head.pid, str(log), {"CPU": head_cpus, "GPU": 0.0},
                                  _port_of(head_args, "--node-manager-port")))
        save(cluster, d)
        wait_for(head, log, lambda: dashboard_up(cluster.dashboard), "the head")
        started = []
        for i in range(workers):  # all at once: each joins the head on its own
            # Its own temp dir, as on its own machine: nodes sharing one would unpack a job's working dir into the
            # same place at once (a job's driver then finds its files gone). Short: Unix socket paths live there.
            temp = tempfile.mkdtemp(prefix="tuner-node-")
            cluster.temp_dirs.append(temp)
            args = ["--address", cluster.gcs, "--node-ip-address", "127.0.0.1", "--num-cpus", num(cpus_per_worker),
                    "--num-gpus", num(gpus_per_worker), "--temp-dir", temp, *node_ports()]
            log = d / f"worker-{i}.log"
            started.append((start(args, log), log))
            cluster.nodes.append(Node("worker", started[-1][0].pid, str(log),
                                      {"CPU": cpus_per_worker, "GPU": gpus_per_worker},
                                      _port_of(args, "--node-manager-port")))
            save(cluster, d)
        for i, (proc, log) in enumerate(started):
            wait_for(proc, log, lambda log=log: "Ray runtime started" in log.read_text(errors="replace"),
                      f"worker {i}")
    except BaseException:
        down(d)
        raise
    return cluster


def refuse_if_up(d: Path) -> None:
    """ClusterError if the cluster recorded in ``d`` still runs: one state dir, one cluster."""
    if (d / STATE_FILE).is_file() and any(alive(n.pid) for n in load(d).nodes):
        raise ClusterError(f"a local cluster from {d / STATE_FILE} is still up: `tuner cluster down` first")


def num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def save(cluster: Cluster, d: Path) -> None:
    (d / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=1))


def load(d: Path | None = None) -> Cluster:
    path = (d or default_state_dir()) / STATE_FILE
    if not path.is_file():
        raise ClusterError(f"no local cluster recorded at {path} (`tuner cluster up` starts one)")
    raw = json.loads(path.read_text())
    return Cluster(gcs=raw["gcs"], dashboard=raw["dashboard"], nodes=[Node(**n) for n in raw["nodes"]],
                   temp_dirs=raw.get("temp_dirs", []))


def alive(pid: int) -> bool:
    """The process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop_groups(pids: list[int]) -> None:
    """SIGTERM to each node's whole process group (its `ray start --block` leader, which stops the node's services,
    and the worker processes, which would otherwise keep the raylet waiting), all at once; then SIGKILL to
    whatever of a group is left once its leader has ended or the timeout has passed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        for pid in pids:
            _reap(pid)
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # whatever of the node outlived its leader
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child when `up` ran in this process


def down(d: Path | None = None) -> int:
    """Stop the nodes ``up`` started (workers first) and forget the cluster; how many nodes were running."""
    d = d or default_state_dir()
    try:
        cluster = load(d)
    except ClusterError:
        return 0
    running = sum(alive(n.pid) for n in cluster.nodes)
    _stop_groups([n.pid for n in cluster.workers])
    _stop_groups([n.pid for n in cluster.nodes if n.role == "head"])
    # `ray start` records its cluster for a later bare ray.init() to join; ours is gone (`ray stop` would do this).
    current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if current.is_file() and current.read_text().strip().endswith(cluster.gcs.rsplit(":", 1)[1]):
        current.unlink()
    for temp in cluster.temp_dirs:
        shutil.rmtree(temp, ignore_errors=True)
    (d / STATE_FILE).unlink(missing_ok=True)
    return running


def status(d: Path | None = None) -> tuple[Cluster, list[bool]]:
    cluster = load(d)
    return cluster, [alive(n.pid) for n in cluster.nodes]


def raylet_pid(node: Node) -> int | None:
    """The raylet of a node (its process group's), to kill it as a lost node would be."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        pgid = int(stat.rsplit(")", 1)[1].split()[2])
        if pgid == node.pid and b"raylet" in cmdline.split(b"\0")[0]:
            return int(proc.name)
    return None
