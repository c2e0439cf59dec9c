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
from support import cli_env, freeze, result_rows, stored_rows, thaw, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
IDLE_TIMEOUT_MIN = 0.1  # the config's 10 minutes, shortened


def tuner(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner", *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env())


def node_states(dashboard: str) -> dict[str, str]:
    from ray.util.state import list_nodes

    return {n.node_id: n.state for n in list_nodes(address=dashboard, detail=True)}


def gpu_workers(dashboard: str) -> list[str]:
    """The node ids of the live nodes that offer GPUs."""
    from ray.util.state import list_nodes

    return [n.node_id for n in list_nodes(address=dashboard, detail=True)
            if n.state == "ALIVE" and n.resources_total.get("GPU")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Iterator[dict]:
    """The rehearsed pool (its cluster.json: the addresses and the head), for this module's tests; stopped after."""
    state = tmp_path_factory.mktemp("pool")
    try:
        up = tuner("cluster", "rehearse", str(REPO / "cluster" / "aws-gpu.yaml"), "--state-dir", str(state),
                   "--idle-timeout-minutes", str(IDLE_TIMEOUT_MIN))
        assert up.returncode == 0, up.stderr[-3000:]
        assert "node type gpu: {CPU: 8, GPU: 1}, 0-8 workers" in up.stdout
        yield {**json.loads((state / "cluster.json").read_text()), "state": str(state)}
    finally:
        down = tuner("cluster", "down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr[-2000:]


def added(node_id: str) -> bool:
    """A node the rehearsal's provider added (the head is the one `ray start` started)."""
    return node_id.startswith("f" * 8)


def empty(pool: dict) -> None:
    """Wait for the nodes an earlier test added to go (idle): each test starts from an empty pool."""
    wait_until(lambda: gpu_workers(pool["dashboard"]) == [] or None, "an empty pool", timeout=120, every=0.5)


def test_a_scheduled_sweep_scales_the_empty_gpu_pool_up_and_back_to_zero_and_its_budget_counts_the_gpus_held(
        pool, shipped_job, tmp_path):
    """`tuner scheduler --once` submits a due run (its schedule added a few minutes back) to the empty pool: the
    autoscaler adds GPU nodes for its trials, none of which runs on the head; its GPU-hour ledger charges each trial's
    training time x the 1 logical GPU it held; once idle, the pool goes back to zero workers. (`tuner submit` to the
    pool: the tests below.)"""
    from datetime import datetime, timedelta, timezone

    from tuner import store
    from tuner.service import cron
    from tuner.service import jobs as ray_jobs

    assert gpu_workers(pool["dashboard"]) == []  # an empty pool: the head offers no CPUs or GPUs
    spec = shipped_job("nightly")
    db = tmp_path / "schedules.db"
    engine = store.open_store(str(db), tmp_path)
    cron.add(engine, spec, "* * * * *", address=pool["dashboard"], warm_start=0,
             overrides=["resources.gpus_per_worker=1", "search.num_trials=2", "budget.gpu_hours=1.0"],
             now=datetime.now(timezone.utc) - timedelta(minutes=3))
    engine.dispose()
    fired_at = time.time()
    fired = tuner("scheduler", "--once", "--store", str(db))
    assert fired.returncode == 0, fired.stderr[-3000:]
    (job,) = [j for j in ray_jobs.list_jobs(pool["dashboard"]) if j["job"].startswith("tuner-sched-nightly-")]
    assert ray_jobs.wait(job["job"], pool["dashboard"]) == "SUCCEEDED"
    ended = time.monotonic()
    (sweep,) = (spec.parent.parent / "sweeps").glob("nightly-*")
    rows = {t.name.removeprefix("trial_"): result_rows(t) for t in sweep.glob("trial_*")}
    every_row = [r for trial_rows in rows.values() for r in trial_rows]
    assert len(rows) == 2 and {r["world_size"] for r in every_row} == {1}
    workers = {r["node_id"] for r in every_row}
    assert all(added(n) for n in workers), workers  # none on the head
    first = min(r["timestamp"] - r["time_total_s"] for r in every_row)  # when a trial began training
    last = max(r["timestamp"] for r in every_row)
    print(f"scheduled run {job['job']}: trials ran on {len(workers)} added GPU node(s); the scheduler's firing to the "
          f"first trial training on a new node: {first - fired_at:.0f} s (1 s resolution)")
    ledger = json.loads((sweep / "budget.json").read_text())
    trained_s = sum(r["time_this_iter_s"] for r in every_row)
    assert ledger["ended_by"] is None and ledger["limits"] == {"gpu_hours": 1.0}
    assert abs(ledger["spent"]["gpu_hours"] - trained_s * 1 / 3600) < 1e-5, (ledger, trained_s)
    print(f"{ledger['spent']['gpu_hours'] * 3600:.1f} GPU-seconds charged for {trained_s:.1f} s of training x 1 GPU")
    wait_until(lambda: gpu_workers(pool["dashboard"]) == [] or None, "the pool back at zero workers", timeout=120,
               every=0.5)
    print(f"the last trial's last report to zero GPU workers: {time.time() - last:.0f} s (idle timeout "
          f"{IDLE_TIMEOUT_MIN * 60:.0f} s; the job ended {time.monotonic() - ended:.1f} s before)")


def test_a_spread_sharded_trial_gets_two_nodes(pool, shipped_job):
    """Two DDP workers of 1 CPU each, spread: one added node (8 CPUs) could hold both, so the autoscaler adds two.
    Submitted with the raw `ray job submit`, as a Ray user would, running `tuner run` in the job."""
    from ray.util.state import list_actors

    empty(pool)
    spec = shipped_job("spread")
    r = subprocess.run([str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", pool["dashboard"],
                        "--working-dir", str(spec.parent), "--", "python", "-m", "tuner", "run", spec.name,
                        "--set", "search.num_trials=1", "--set", "resources.workers_per_trial=2",
                        "--set", "resources.strategy=ddp", "--set", "resources.placement=spread"],
                       capture_output=True, text=True, timeout=300, env=cli_env())
    assert r.returncode == 0 and "succeeded" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    (trial,) = (spec.parent.parent / "sweeps" / "spread").glob("trial_*")
    assert result_rows(trial)[-1]["world_size"] == 2
    ranks = list_actors(address=pool["dashboard"], filters=[("class_name", "=", "RayTrainWorker")], detail=True,
                        raise_on_missing_output=False)
    nodes = {a.node_id for a in ranks}
    assert len(ranks) == 2 and len(nodes) == 2 and all(added(n) for n in nodes), nodes


def test_a_reclaimed_spot_node_is_replaced_and_costs_its_trial_at_most_a_checkpoint_interval(pool, shipped_job):
    """Two trials, each on its own GPU node; the provider kills one trial's node mid-trial (a spot reclaim: every
    process on it SIGKILLed, as a lost machine). The autoscaler adds a replacement, the trial resumes there from its
    last checkpoint (search.max_failures), and the other trial, which goes on, is never run again. Each trial is held
    (SIGSTOP) from its second report, so neither can finish first; the other stays held until the reclaimed one
    resumes, so its node cannot take the retry."""
    eval_every, max_steps = 10, 200
    empty(pool)
    spec = shipped_job("reclaim")
    db = spec.parent.parent / "sweeps" / "tuner.db"
    log = spec.parent.parent / "submit.log"  # its output, followed: a pipe nobody reads would fill
    log_file = log.open("w")
    job = subprocess.Popen([sys.executable, "-m", "tuner", "submit", str(spec), "--address", pool["dashboard"],
                            "--wait", "--set", "search.num_trials=2", "--set", "resources.gpus_per_worker=1",
                            "--set", "search.max_failures=1", "--set", f"train.max_steps={max_steps}",
                            "--set", f"train.eval_every={eval_every}"],
                           env=cli_env(), stdout=log_file, stderr=subprocess.STDOUT, text=True)
    held: list[int] = []
    try:
        holding: set[str] = set()

        def hold_each_at_its_second_report() -> bool | None:
            assert job.poll() is None, log.read_text()[-3000:]
            for trial_id, trial_rows in stored_rows(db, "reclaim").items():
                if len(trial_rows) >= 2 and trial_id not in holding:
                    held.extend(freeze([trial_rows[-1]["pid"]]))
                    holding.add(trial_id)
            return len(holding) == 2 or None

        wait_until(hold_each_at_its_second_report, "both trials' second report", timeout=240)
        rows = stored_rows(db, "reclaim")  # each is at most a report or two further, far from its end
        victim, other = sorted(rows)
        node = rows[victim][-1]["node_id"]
        reclaimed = time.monotonic()
        r = tuner("cluster", "reclaim", "--node", node, "--state-dir", pool["state"])
        assert r.returncode == 0, r.stderr[-2000:]
        wait_until(lambda: node_states(pool["dashboard"]).get(node) == "DEAD" or None, "the reclaimed node gone",
                   timeout=120, every=0.5)
        gone = time.monotonic() - reclaimed
        thaw([rows[victim][-1]["pid"]])  # its node is gone: nothing to train on

        def resumed() -> dict | None:
            return next((r for r in stored_rows(db, "reclaim").get(victim, []) if r["resumed_at_step"] > 0), None)

        first_resumed = wait_until(resumed, "the reclaimed trial resumed on another node", timeout=240, every=0.5)
        replaced = time.monotonic() - reclaimed
        thaw(held)
        job.wait(timeout=300)
    finally:
        thaw(held)
        if job.poll() is None:  # the test failed: the sweep goes on in the pool, but nothing here waits for it
            job.kill()
            job.wait()
        log_file.close()
    output = log.read_text()
    assert job.returncode == 0 and ": SUCCEEDED" in output, output[-3000:]
    trial_dirs = {d.name.removeprefix("trial_"): d for d in (spec.parent.parent / "sweeps" / "reclaim").glob("trial_*")}
    history = result_rows(trial_dirs[victim])
    restart = next(i for i, r in enumerate(history) if r["resumed_at_step"] > 0)
    last, resumed_at = history[restart - 1]["step"], history[restart]["resumed_at_step"]
    assert first_resumed["node_id"] not in {node, rows[other][-1]["node_id"]} and added(first_resumed["node_id"])
    assert last - eval_every <= resumed_at <= last  # at most one checkpoint interval of reported steps redone
    assert [r["step"] for r in history] == [*range(eval_every, last + 1, eval_every),
                                            *range(resumed_at + eval_every, max_steps + 1, eval_every)]
    assert all(r["resumed_at_step"] == 0 for r in result_rows(trial_dirs[other]))  # the other never ran again
    print(f"reclaimed node gone after {gone:.1f} s; the trial resumed on a replacement node {replaced:.1f} s after the "
          f"reclaim, from step {resumed_at} (last report from the lost node: step {last}): "
          f"{(last - resumed_at) // eval_every} checkpoint interval(s) redone")
