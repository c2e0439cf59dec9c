"""Placement of a sharded trial's workers on a real multi-node Ray (ray.cluster_utils.Cluster, logical GPUs, no
CUDA): pack and spread, gang waiting, and the unplaceable-trial error. The cluster runs in a child process, since
this session's tests already hold a local Ray."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBE = textwrap.dedent('''
    import json, socket, sys, threading, time
    from pathlib import Path
    import ray
    from ray.cluster_utils import Cluster

    out = Path(sys.argv[1])
    # With its own dashboard: Ray Train's placement-group cleaner asks the state API whether its controller lives, and
    # a cluster without one makes it ask the session's Ray's dashboard on the default port, which waits 10 s per run.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dashboard_port = s.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port})
    nodes = [cluster.add_node(num_cpus=4, num_gpus=4) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    print("ADDRESS", cluster.address, flush=True)  # the test checks the unplaceable error meanwhile

    from ray.train import RunConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    from tuner.trial.workers import scaling_config
    from tuner.spec import ResourcesSpec

    def other_gang_waits_or_ran(other):
        """The other gang's placement group waits for GPUs (this gang holds them all), or it has run already."""
        if list(out.glob(f"{other}-*.json")):
            return True
        return any(pg["state"] == "PENDING" for pg in ray.util.placement_group_table().values())

    def loop(config):
        import ray.train
        rank = ray.train.get_context().get_world_rank()
        start = time.time()
        waited = None
        if config["other"]:  # hold this gang's GPUs until the other gang is seen waiting for them
            deadline = time.monotonic() + 60
            while not other_gang_waits_or_ran(config["other"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            waited = other_gang_waits_or_ran(config["other"])
        Path(config["out"], f"{config['name']}-{rank}.json").write_text(json.dumps({
            "node": ray.get_runtime_context().get_node_id(), "gpus": [str(g) for g in ray.get_gpu_ids()],
            "start": start, "end": time.time(), "other_waited_or_ran": waited}))
        ray.train.report({"done": 1})

    errors = []

    def run(name, other=None, **resources):
        spec = ResourcesSpec(workers_per_trial=2, **resources)
        try:
            DataParallelTrainer(loop, train_loop_config={"out": str(out), "name": name, "other": other},
                                scaling_config=scaling_config(spec),
                                run_config=RunConfig(name=name, storage_path=str(out / "storage"))).fit()
        except Exception as e:  # a thread's error would go unseen: the probe fails with it
            errors.append(f"{name}: {type(e).__name__}: {e}")

    # Both at once (3 of a node's 4 GPUs at most): pack puts its 2 workers on one node, spread one on each.
    runs = [threading.Thread(target=run, args=("pack",), kwargs={"gpus_per_worker": 1, "placement": "pack"}),
            threading.Thread(target=run, args=("spread",), kwargs={"gpus_per_worker": 1, "placement": "spread"})]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    # Two trials that each need the whole cluster's GPUs: the second waits for the first, all or nothing. The first
    # holds its GPUs until the second's placement group is seen pending, so the second cannot have slipped past.
    runs = [threading.Thread(target=run, args=(f"gang{i}", f"gang{1 - i}"), kwargs={"gpus_per_worker": 4})
            for i in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    if errors:
        sys.exit("; ".join(errors))
    (out / "worker_nodes.json").write_text(json.dumps([n.node_id for n in nodes]))
    print("DONE", flush=True)
    sys.stdin.readline()  # until the test's `tuner run --address` against this cluster has ended
    ray.shutdown()
    cluster.shutdown()
''')

SPEC = """
name: unplaceable
model: {hidden_size: 32, num_layers: 1, num_heads: 2}
data: {seq_len: 32, source: corpus.txt}
train: {max_steps: 4, eval_every: 2, warmup_steps: 1}
search: {algorithm: random, scheduler: fifo, num_trials: 1, space: {train.lr: {loguniform: [1.0e-3, 1.0e-2]}}}
resources: {workers_per_trial: 3, gpus_per_worker: 3}
"""


def test_pack_spread_gang_waiting_and_the_unplaceable_error(tmp_path, corpus):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    proc = subprocess.Popen([sys.executable, str(probe), str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def line_starting(word: str) -> str:
            line = ""
            while proc.poll() is None and not line.startswith(word):
                line = proc.stdout.readline()
            assert line.startswith(word), proc.stderr.read()[-3000:]
            return line

        address = line_starting("ADDRESS").split()[1]
        # A trial no node can hold is refused before anything starts; checked while the probe's trainers run (the
        # check reads the nodes' total resources, which they do not change).
        (tmp_path / "corpus.txt").write_text(Path(corpus).read_text()[:100_000])
        (tmp_path / "spec.yaml").write_text(SPEC)
        unplaceable = subprocess.Popen([sys.executable, "-m", "tuner", "run", str(tmp_path / "spec.yaml"), "--address",
                                        address, "--set", f"storage={tmp_path / 'sweeps'}"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, stderr = unplaceable.communicate(timeout=300)
        assert unplaceable.returncode == 2, stderr[-3000:]
        assert "3 workers x {CPU: 1, GPU: 3}" in stderr and "largest node has {CPU: 4, GPU: 4}" in stderr
        assert "holds at most 2 such workers" in stderr
        assert not (tmp_path / "sweeps" / "unplaceable").exists()
        line_starting("DONE")

        def worker(name: str, rank: int) -> dict:
            return json.loads((tmp_path / f"{name}-{rank}.json").read_text())

        workers = set(json.loads((tmp_path / "worker_nodes.json").read_text()))
        pack, spread = [worker("pack", r) for r in (0, 1)], [worker("spread", r) for r in (0, 1)]
        assert pack[0]["node"] == pack[1]["node"] and pack[0]["node"] in workers
        assert spread[0]["node"] != spread[1]["node"] and {w["node"] for w in spread} == workers
        assert all(len(w["gpus"]) == 1 for w in pack + spread)
        gangs = sorted(([worker(f"gang{i}", r) for r in (0, 1)] for i in (0, 1)), key=lambda g: g[0]["start"])
        assert all(len(w["gpus"]) == 4 for g in gangs for w in g)
        # The first trial held every GPU while the second's placement group waited (all or nothing: no worker of the
        # second started on the GPUs left over), and the second started only once the first had ended.
        assert all(w["other_waited_or_ran"] for w in gangs[0] + gangs[1])
        assert min(w["start"] for w in gangs[1]) >= max(w["end"] for w in gangs[0])
    finally:
        if proc.poll() is None:
            proc.communicate("\n", timeout=120)
