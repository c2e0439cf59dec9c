"""A sweep on a multi-node cluster on this machine (tuner.service.local_cluster: a driver-only head and 2 worker
nodes, each its own `ray start`), submitted with the raw `ray job submit`: its trials run on both workers and none on
the head; then one worker node is lost (its raylet SIGKILLed) mid-sweep, and the trials it ran finish elsewhere from
their last checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support import cli_env, freeze, frozen, result_rows, stored_rows, wait_until

from tuner.service import local_cluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VENV_BIN = Path(sys.executable).parent
EVAL_EVERY = 10
MAX_STEPS = 200


def _nodes(dashboard: str) -> list[dict]:
    r = subprocess.run([str(VENV_BIN / "ray"), "list", "nodes", "--address", dashboard, "--format", "json"],
                       capture_output=True, text=True, env=cli_env(), timeout=60, check=True)
    return json.loads(r.stdout)


@dataclass
class Disturbed:
    summary: dict
    trial_dirs: dict[str, Path]
    workers: set[str]  # node ids
    head: str
    killed: str  # the lost worker's node id
    on_killed: dict[str, int]  # trial_id -> its last step reported from the lost node
    finished_before: set[str]  # trials already done when the node was lost
    wall_s: float


@pytest.fixture(scope="module")
def disturbed(tmp_path_factory, corpus) -> Disturbed:
    """Runs the sweep once for this module's tests: 3 trials, 2 at a time (one per worker), one worker lost while
    a trial runs on it and another runs on the other worker."""
    root = tmp_path_factory.mktemp("multinode")
    cluster = local_cluster.up(2, cpus_per_worker=1, head_cpus=0, state_dir=root / "cluster")
    try:
        job = root / "job"
        job.mkdir()
        (job / "corpus.txt").write_text(Path(corpus).read_text()[:200_000])
        spec = {"name": "multinode", "storage": str(root / "sweeps"),
                "model": {"family": "llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
                "data": {"seq_len": 32, "source": "corpus.txt"},
                "train": {"max_steps": MAX_STEPS, "eval_every": EVAL_EVERY, "batch_size": 4, "eval_tokens": 512},
                "search": {"algorithm": "random", "scheduler": "fifo", "num_trials": 3, "max_concurrent": 2,
                           "max_failures": 1, "seed": 0, "space": {"train.lr": {"loguniform": [1.0e-3, 1.0e-2]}}},
                "resources": {"cpus_per_worker": 1}}
        (job / "spec.yaml").write_text(yaml.safe_dump(spec))
        nodes = _nodes(cluster.dashboard)
        head = next(n["node_id"] for n in nodes if n["is_head_node"])
        workers = {n["node_id"] for n in nodes if not n["is_head_node"]}
        started = time.monotonic()
        proc = subprocess.Popen([str(VENV_BIN / "ray"), "job", "submit", "--address", cluster.dashboard,
                                 "--working-dir", str(job), "--", "python", "-m", "tuner", "run", "spec.yaml"],
                                env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sweep = root / "sweeps" / "multinode"

        def submitted_job_runs() -> None:
            if proc.poll() is not None:
                raise AssertionError(f"the job ended before a node was lost: {proc.stdout.read()[-3000:]}")

        db = root / "sweeps" / "tuner.db"  # committed as each result arrives (result.json is synced in bursts)

        def an_early_trial() -> tuple[str, dict] | None:
            submitted_job_runs()
            return next(((t, r[-1]) for t, r in stored_rows(db, "multinode").items()
                         if len(r) >= 2 and r[-1]["step"] <= MAX_STEPS // 2), None)

        def a_trial_on_another_node() -> bool:
            submitted_job_runs()
            return any(len(r) >= 2 and r[-1]["node_id"] != killed for r in stored_rows(db, "multinode").values())

        with frozen() as held:
            # The node is lost while a trial runs there: that trial is stopped (SIGSTOP) halfway at the latest, so it
            # cannot finish first (it is at most one report past its last row), and goes on once its raylet is gone.
            trial, row = wait_until(an_early_trial, "a trial's second report", timeout=240)
            held += freeze([row["pid"]])
            killed = row["node_id"]
            # Its node's one CPU is held: the next trial runs on the other worker.
            wait_until(a_trial_on_another_node, "a trial on the other worker", timeout=240)
            node = next(n for n in cluster.workers if _node_id_of(n) == killed)
            rows = stored_rows(db, "multinode")
            on_killed = {trial: rows[trial][-1]["step"]}
            finished_before = {t for t, r in rows.items() if r and r[-1]["step"] == MAX_STEPS}
            os.kill(local_cluster.raylet_pid(node), signal.SIGKILL)  # as a lost machine would
            # The trial stays frozen until Ray declares the node dead (its health checks take seconds): thawed
            # earlier, it could train to the end on the lost node before anyone noticed (seen once in a fresh run).
            wait_until(lambda: any(n["node_id"] == killed and n["state"] == "DEAD" for n in _nodes(cluster.dashboard)),
                       "the lost node declared dead", timeout=120, every=0.5)
        output, _ = proc.communicate(timeout=400)
        wall = time.monotonic() - started
        assert proc.returncode == 0, output[-3000:]
        summary = json.loads((sweep / "summary.json").read_text())
        dirs = {d.name.removeprefix("trial_"): d for d in sweep.glob("trial_*")}
        yield Disturbed(summary, dirs, workers, head, killed, on_killed, finished_before, wall)
    finally:
        local_cluster.down(root / "cluster")


def _node_id_of(node: local_cluster.Node) -> str | None:
    pid = local_cluster.raylet_pid(node)
    if pid is None:
        return None
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return next((a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--node_id=")), None)


def test_trials_run_on_both_workers_and_none_on_the_driver_only_head(disturbed):
    per_node: dict[str, set[str]] = {}
    for trial_id, d in disturbed.trial_dirs.items():
        for row in result_rows(d):
            per_node.setdefault(row["node_id"], set()).add(trial_id)
    assert disturbed.head not in per_node
    assert set(per_node) == disturbed.workers
    print("trials per node:", {n[:8]: sorted(t) for n, t in per_node.items()}, f"sweep {disturbed.wall_s:.0f} s")


def test_a_lost_node_costs_its_trials_at_most_one_checkpoint_interval(disturbed):
    trials = disturbed.summary["trials"]
    assert len(trials) == 3 and all(t["state"] == "completed" and "error" not in t for t in trials)
    assert disturbed.on_killed, "no trial was running on the lost node"
    for trial_id, last_step in disturbed.on_killed.items():
        rows = result_rows(disturbed.trial_dirs[trial_id])
        restart = next(i for i, r in enumerate(rows) if r["resumed_at_step"] > 0)
        last, resumed = rows[restart - 1]["step"], rows[restart]["resumed_at_step"]
        # Its process may train and report on a while after its raylet died, until Ray declares the node dead. It
        # resumed elsewhere from a checkpoint it reported: the last one, or the one before when the node died just as
        # its last report reached Tune (that report's checkpoint never counted, and its steps are trained again). At
        # most one checkpoint interval of reported progress is redone, and no step is missing.
        assert last >= last_step and last - EVAL_EVERY <= resumed <= last
        assert rows[restart]["node_id"] != disturbed.killed
        assert [r["step"] for r in rows] == [*range(EVAL_EVERY, last + 1, EVAL_EVERY),
                                             *range(resumed + EVAL_EVERY, MAX_STEPS + 1, EVAL_EVERY)]
        print(f"trial {trial_id}: last report from the node at step {last} (step {last_step} when its raylet was "
              f"killed), resumed at {resumed} on another node: {last - resumed} reported steps redone")
    for trial_id in disturbed.finished_before:  # finished trials are never run again
        assert all(r["resumed_at_step"] == 0 for r in result_rows(disturbed.trial_dirs[trial_id]))
    for trial_id, d in disturbed.trial_dirs.items():
        if trial_id not in disturbed.on_killed:
            assert all(r["resumed_at_step"] == 0 for r in result_rows(d))
