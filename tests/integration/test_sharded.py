"""Sharded trials through Ray Train V2 inside Tune trials, on the shared local Ray: 2 gloo workers per trial."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from support import Lockstep, PlacementGroupWatch, result_rows, stored_rows, train_run_ends, wait_until

from tuner.spec import validate
from tuner.sweep.driver import run_sweep
from tuner.trial.parallel import resolve_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def rows(trial: dict) -> list[dict]:
    return result_rows(Path(trial["path"]))


def _train_worker_pids() -> list[int]:
    """The Ray Train workers of this session's local Ray: those its raylet started (another Ray on this machine,
    e.g. another test process's, may run Train workers too)."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if cmdline.startswith(b"ray::RayTrainWorker") and parent == raylet:
                pids.append(int(proc.name))
    return sorted(pids)


def _train_checkpoint_steps(path: Path) -> list[int]:
    """The steps of the checkpoints Ray Train's workers have written under ``path`` (rank 0's trial.json in each)."""
    steps = []
    for f in path.glob("**/checkpoint_*/trial.json"):
        with contextlib.suppress(OSError, ValueError):  # being written
            steps.append(json.loads(f.read_text())["progress"]["step"])
    return steps


def test_a_ddp_trial_survives_a_killed_rank(ray_local, tiny_raw):
    """Two DDP workers; one is SIGKILLed mid-trial: Ray Train restarts the worker group from the last checkpoint."""
    eval_every = 5
    spec = validate(tiny_raw(train={"max_steps": 60, "eval_every": eval_every},
                             search={"num_trials": 1, "scheduler": "fifo"},
                             resources={"workers_per_trial": 2, "strategy": "ddp", "max_worker_failures": 1}))
    out: dict = {}
    earlier = set(_train_worker_pids())  # another test's Train workers, if any are still about: not ours
    sweep = threading.Thread(target=lambda: out.setdefault("result", run_sweep(spec)))
    sweep.start()

    def two_workers_early_in_the_trial() -> list[int] | None:
        assert sweep.is_alive(), "the sweep ended before a worker could be killed"
        reported = stored_rows(spec.sweep_dir.parent / "tuner.db", spec.name)  # as results arrive
        steps = _train_checkpoint_steps(spec.sweep_dir / "train")
        pids = [p for p in _train_worker_pids() if p not in earlier]
        # A checkpoint to restart from (one that reached Tune, so the Train controller holds it), and halfway at the
        # latest: a worker is at most two reports past its run's newest checkpoint (its next report waits for the
        # controller to take this one), so the trial cannot end before the kill.
        return pids if reported and max(steps, default=0) <= 30 and len(pids) == 2 else None

    killed = wait_until(two_workers_early_in_the_trial, "a report with both Train workers up", timeout=240)[-1]
    os.kill(killed, signal.SIGKILL)
    sweep.join(timeout=300)
    result = out["result"]
    (trial,) = result.trials
    assert trial["state"] == "completed" and "error" not in trial
    last = trial["last_result"]
    assert last["world_size"] == 2 and last["wrapper"] == "DistributedDataParallel"
    assert last["tokens"] == 60 * 4 * 2 * 32  # steps x per-device batch x workers x seq_len
    # Tune keeps a pointer; Ray Train owns the (sharded) checkpoint it names, and the best model is exported from it.
    target = resolve_checkpoint(trial["checkpoint"])
    assert target != Path(trial["checkpoint"]) and (target / "meta.pt").is_file()
    assert str(target).startswith(str(result.path / "train"))
    assert (result.path / "best_model" / "config.json").is_file()
    history = rows(trial)
    restart = next(i for i, r in enumerate(history) if r["resumed_at_step"] > 0)
    before, after = history[:restart], history[restart:]
    # The new worker group resumed from the last checkpoint reported before the kill: what it lost is less than one
    # checkpoint interval (the steps after that checkpoint), and no reported step was lost or repeated.
    assert after[0]["resumed_at_step"] == before[-1]["step"]
    assert after[0]["train_run"] == before[-1]["train_run"]  # restarted inside the same Train run
    steps = [r["step"] for r in history]
    assert steps == list(range(eval_every, 61, eval_every))
    assert history[-1]["world_size"] == 2


@contextlib.contextmanager
def another_ray():
    """A second local Ray on this machine, as another sweep's or a `ray start` head would be, for the block."""
    import subprocess
    import sys

    script = "import ray, sys, time; ray.init(address='local', num_cpus=1); print('up', flush=True); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up", "the other Ray did not start"
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # Python exits through ray.init's atexit hook, which stops its Ray
        proc.wait(timeout=60)


def test_a_trial_asha_stops_frees_its_workers_for_the_next_trial(ray_local, tiny_raw):
    """A cluster that holds one sharded trial at a time (2 workers x 1 CPU on 2 CPUs: the sweep runs one trial at a
    time). rung-asha cuts the second trial, which ranks below the first, at its first rung: each trial's Train run
    (the one that completes and the one that is stopped) ends and its workers' placement group is removed within 10 s
    of its last report, and the next trial's workers start on those CPUs. With another Ray on this machine: Ray
    Train's cleaner, which removes a stopped run's placement group, once asked "the" local Ray's state API, failed
    to choose, and the sweep waited for ever (tuner.sweep.tuner.start_embedded_ray tells it the address)."""
    lrs = [1.0e-2, 1.0e-6]  # the first runs on; the second is cut at its first rung
    spec = validate(tiny_raw(
        train={"max_steps": 54, "eval_every": 18, "warmup_steps": 0},  # rungs at steps 2, 6, 18 and 54
        search={"scheduler": "rung-asha", "algorithm": "random", "num_trials": 2,
                "space": {"train.lr": {"choice": lrs}}, "points_to_evaluate": [{"train.lr": lr} for lr in lrs]},
        resources={"workers_per_trial": 2, "cpus_per_worker": 1, "strategy": "ddp"}))
    with another_ray(), PlacementGroupWatch() as watch:
        result = run_sweep(spec)  # it may return while the last trial's Train run still shuts down
        wait_until(lambda: all("REMOVED" in r for r in watch.runs(bundles=2)), "every Train run to end", timeout=60)
    runs = watch.runs(bundles=2)  # one Train run per trial, one at a time: in the order the trials ran
    trials = sorted(result.trials, key=lambda t: rows(t)[0]["timestamp"])
    assert len(runs) == len(trials) == 2 and all("CREATED" in r and "REMOVED" in r for r in runs), runs
    assert [t["state"] for t in trials] == ["completed", "stopped"]
    assert [rows(t)[-1]["step"] for t in trials] == [54, 2]
    for trial, run in zip(trials, runs, strict=True):
        held = run["REMOVED"] - rows(trial)[-1]["timestamp"]  # Tune's timestamps are whole seconds
        print(f"{trial['state']} trial: its workers' placement group went {held:.1f} s after its last report")
        assert held < 10 + 1, (trial["state"], held)
    for before, after in zip(runs, runs[1:], strict=False):  # the next trial (Tune starts it when one ends) gets them
        print(f"the next trial's workers started {after['CREATED'] - before['REMOVED']:.1f} s after they were freed")
        assert 0 < after["CREATED"] - before["REMOVED"] < 20


def _live_train_controllers() -> int:
    import ray
    from ray.util.state import list_actors

    # This session's Ray, by its address: another Ray may run on this machine (the remote tests' head).
    return len(list_actors(address=f"http://{ray._private.worker.get_dashboard_url()}",
                           filters=[("class_name", "=", "TrainController"), ("state", "=", "ALIVE")]))


def _train_run_workers(run_name: str) -> list[int]:
    """The pids of a Train run's live workers, from Ray Train's state actor."""
    import ray
    from ray.train.v2._internal.state.state_actor import get_state_actor

    actor = get_state_actor()
    if actor is None:
        return []
    runs = ray.get(actor.get_train_runs.remote(), timeout=10)
    attempts = ray.get(actor.get_train_run_attempts.remote(), timeout=10)
    return [w.pid for run_id, run in runs.items() if run.name == run_name
            for attempt in attempts.get(run_id, {}).values() if attempt.end_time_ns is None for w in attempt.workers]


def train_run_progress(db: Path, sweep: str) -> dict[str, int]:
    """Each trial's latest Train run -> the step of its last report in the sweep store (the run's workers are at most
    two reports past it)."""
    return {rows[-1]["train_run"]: rows[-1]["step"] for rows in stored_rows(db, sweep).values() if rows}


def test_pbt_exploits_two_worker_fsdp_trials(ray_local, tiny_raw, s3, monkeypatch, tmp_path):
    """In a bucket (S3 on loopback): Ray Train writes each run's checkpoints to the bucket and the exploiting trial's
    workers restore the donor's from it. (One storage only, for test time: the sharded trials' other tests write to
    local storage, and the LLM PB2 test exploits there.)"""
    steps_per_report = 10
    monkeypatch.setenv("TUNER_CACHE", str(tmp_path / "cache"))
    over = {"storage": s3.bucket("sharded-pbt"), "storage_endpoint": s3.endpoint}

    def read(path: str) -> str:
        with s3.filesystem().open_input_stream(path.removeprefix("s3://")) as f:
            return f.read().decode()

    def trial_rows(trial: dict) -> list[dict]:
        return [json.loads(line) for line in read(f"{trial['path']}/result.json").splitlines()]

    # An exploit needs the better trial to be in the upper quantile at one of its perturbations (every 20 steps)
    # while the worse one has a result, and then the worse one to reach a perturbation: the trials are kept in step
    # (a Train run that started late would otherwise leave the other to finish alone), and there are three.
    spec = validate(tiny_raw(
        train={"max_steps": 80, "eval_every": steps_per_report, "warmup_steps": 0, "min_lr_ratio": 1.0},
        search={"scheduler": "pbt", "algorithm": "random", "num_trials": 2, "quantile_fraction": 0.5,
                "perturbation_interval": 20 * 4 * 2 * 32,  # 20 steps' tokens
                "space": {"train.lr": {"choice": [1.0e-4, 2.0e-2]}}, "points_to_evaluate": [
                    {"train.lr": 1.0e-4}, {"train.lr": 2.0e-2}]},
        resources={"workers_per_trial": 2, "cpus_per_worker": 0.5, "strategy": "fsdp"}, **over))
    db = spec.sweep_dir.parent / "tuner.db"
    with PlacementGroupWatch() as watch, Lockstep(lambda: train_run_progress(db, spec.name), _train_run_workers,
                                                  lead=steps_per_report, trials=2, end=80) as lockstep:
        result = run_sweep(spec)
        wait_until(lambda: all("REMOVED" in r for r in watch.runs(bundles=2)), "every Train run to end", timeout=60)
    print(f"the trial ahead was held {lockstep.holds} time(s)")
    exploits = [json.loads(line) for line in read(f"{spec.location}/pbt_global.txt").splitlines()]
    assert exploits, "no exploit happened"
    by_index = {int(t["trial_id"].rsplit("_", 1)[1]): t for t in result.trials}
    for target_tag, donor_tag, _target_iter, donor_iter, _old, new_config in exploits:
        target, donor = by_index[int(target_tag.split("_")[0])], by_index[int(donor_tag.split("_")[0])]
        new_lr = new_config["train"]["lr"]
        after = [r for r in trial_rows(target)
                 if r["resumed_from"] == donor["trial_id"] and r["config"]["train"]["lr"] == new_lr]
        assert after, "the exploiting trial never trained from the donor's checkpoint"
        first = after[0]
        assert first["wrapper"] == "FSDP2"
        assert first["resumed_at_step"] in {r["step"] for r in trial_rows(donor)}
        assert 0 < first["resumed_at_step"] <= donor_iter * steps_per_report
        assert first["step"] == first["resumed_at_step"] + steps_per_report
        assert math.isclose(first["lr"], new_lr, rel_tol=1e-12)  # its own new lr, on every rank's optimizer
    assert all(t["last_result"]["world_size"] == 2 for t in result.trials)
    # Every Train run (an exploited trial's ends when PBT pauses it) freed its workers' placement group within 10 s of
    # its last report. Runs and groups pair up in the order they ended (closest pairs: a held group would show).
    ends = train_run_ends(r for trial in result.trials for r in trial_rows(trial))
    removed = sorted(g["REMOVED"] for g in watch.runs(bundles=2))
    assert len(removed) == len(ends) >= 3, (removed, ends)  # two trials' runs and the exploit's new one at least
    held = [at - end for at, end in zip(removed, sorted(ends.values()), strict=True)]
    print(f"each Train run's placement group went {', '.join(f'{h:.1f}' for h in held)} s after its last report")
    assert max(held) < 10 + 1, held  # Tune's timestamps are whole seconds
    # Only an exploited trial restarts (a new Train run); the donor trains on in its first one.
    donor_runs = {r["train_run"] for r in trial_rows(by_index[int(exploits[0][1].split("_")[0])])}
    assert len(donor_runs) == 1
    # A trial PBT paused to exploit aborted its Train run: nothing trains on, holding CPUs, after the sweep.
    deadline = time.monotonic() + 30
    while _live_train_controllers() and time.monotonic() < deadline:
        time.sleep(1)
    assert _live_train_controllers() == 0
