"""The shipped AWS GPU pool rehearsed on this machine (`tuner cluster rehearse cluster/aws-gpu.yaml`): Ray's own
autoscaler adds local GPU worker nodes (logical GPUs) as a submitted sweep's trials ask for them and removes them once
idle; the placement check counts the nodes the autoscaler may add, so the empty pool is not refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cli_env, result_rows, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
IDLE_TIMEOUT_MIN = 0.1  # the config's 10 minutes, shortened


def tuner(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env())


def gpu_workers(dashboard: str) -> list[str]:
    """The node ids of the live nodes that offer GPUs."""
    from ray.util.state import list_nodes

    return [n.node_id for n in list_nodes(address=dashboard, detail=True)
            if n.state == "ALIVE" and n.resources_total.get("GPU")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Iterator[dict]:
    """The rehearsed pool (its cluster.json: the addresses and the head), for this module's tests; stopped after."""
    state = tmp_path_factory.mktemp("pool")
    up = tuner("cluster", "rehearse", str(REPO / "cluster" / "aws-gpu.yaml"), "--state-dir", str(state),
               "--idle-timeout-minutes", str(IDLE_TIMEOUT_MIN))
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert "node type gpu: {CPU: 8, GPU: 1}, 0-8 workers" in up.stdout
        yield json.loads((state / "cluster.json").read_text())
    finally:
        down = tuner("cluster", "down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr[-2000:]


def added(node_id: str) -> bool:
    """A node the rehearsal's provider added (the head is the one `ray start` started)."""
    return node_id.startswith("f" * 8)


def test_a_sweep_sent_to_the_empty_gpu_pool_scales_it_up_and_back_to_zero(pool, shipped_job):
    assert gpu_workers(pool["dashboard"]) == []  # an empty pool: the head offers no CPUs or GPUs
    spec = shipped_job("pool")
    submitted = time.time()
    r = tuner("submit", str(spec), "--address", pool["dashboard"], "--wait", "--set", "search.num_trials=2",
              "--set", "resources.gpus_per_worker=1")
    ended = time.monotonic()
    assert r.returncode == 0 and ": SUCCEEDED" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    trials = sorted((spec.parent.parent / "sweeps" / "pool").glob("trial_*"))
    rows = [row for t in trials for row in result_rows(t)]
    assert len(trials) == 2 and {row["world_size"] for row in rows} == {1}
    workers = {row["node_id"] for row in rows}
    assert all(added(n) for n in workers), workers  # none on the head
    print(f"trials ran on {len(workers)} added GPU node(s)")
    first = min(row["timestamp"] - row["time_total_s"] for row in rows)  # when a trial began training
    last = max(row["timestamp"] for row in rows)
    print(f"submit to the first trial training on a new node: {first - submitted:.0f} s (1 s resolution)")
    wait_until(lambda: gpu_workers(pool["dashboard"]) == [] or None, "the pool back at zero workers", timeout=120,
               every=0.5)
    print(f"the last trial's last report to zero GPU workers: {time.time() - last:.0f} s (idle timeout "
          f"{IDLE_TIMEOUT_MIN * 60:.0f} s; the job ended {time.monotonic() - ended:.1f} s before)")


def test_a_spread_sharded_trial_gets_two_nodes(pool, shipped_job):
    """Two DDP workers of 1 CPU each, spread: one added node (8 CPUs) could hold both, so the autoscaler adds two."""
    from ray.util.state import list_actors

    spec = shipped_job("spread")
    r = tuner("submit", str(spec), "--address", pool["dashboard"], "--wait", "--set", "search.num_trials=1",
              "--set", "resources.workers_per_trial=2", "--set", "resources.strategy=ddp",
              "--set", "resources.placement=spread")
    assert r.returncode == 0 and ": SUCCEEDED" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    (trial,) = (spec.parent.parent / "sweeps" / "spread").glob("trial_*")
    assert result_rows(trial)[-1]["world_size"] == 2
    ranks = list_actors(address=pool["dashboard"], filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                        raise_on_missing_output=False)
    nodes = {a.node_id for a in ranks}
    assert len(ranks) == 2 and len(nodes) == 2 and all(added(n) for n in nodes), nodes
