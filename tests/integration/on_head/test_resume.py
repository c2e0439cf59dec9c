"""`tuner resume` after the sweep driver is SIGKILLed mid-sweep, on a real head: finished trials are not re-run,
unfinished ones continue from their checkpoints, and no reported result row is lost (on disk or in the store).

The kill comes at a state the test holds: the first trial to report twice is frozen (SIGSTOP) after its second report,
so it cannot finish, and the driver dies once Tune's saved experiment state has another trial finished and the
frozen one running with a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml
from support import alive, cli_env, freeze, frozen, rows_by_trial, saved_trial_states, stored_rows, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STEPS = 60


def test_resume_after_the_driver_is_killed(ray_head, tiny_raw, tmp_path):
    raw = tiny_raw(name="killed", storage=str(tmp_path / "sweeps"),
                   train={"max_steps": STEPS, "eval_every": 5},
                   search={"algorithm": "tpe", "scheduler": "fifo", "num_trials": 3, "max_concurrent": 2})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    sweep, db = tmp_path / "sweeps" / "killed", tmp_path / "sweeps" / "tuner.db"
    driver = subprocess.Popen([sys.executable, "-m", "tuner", "run", str(tmp_path / "spec.yaml"), "--address",
                               ray_head.gcs], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)

    def driver_runs() -> None:
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}) before the kill: {driver.stdout.read()}")

    def an_early_trial() -> tuple[str, int] | None:
        driver_runs()
        return next(((t, rows[-1]["pid"]) for t, rows in stored_rows(db, "killed").items()
                     if len(rows) >= 2 and rows[-1]["step"] <= STEPS // 2), None)

    def one_done_and_the_frozen_one_saved_with_a_checkpoint() -> bool:
        driver_runs()
        saved = saved_trial_states(sweep)
        status, checkpoint = saved.get(held_trial, ("", None))
        return status == "RUNNING" and checkpoint is not None and any(s == "TERMINATED" for s, _ in saved.values())

    with frozen() as held:
        # Stopped halfway at the latest: a function trial waits in tune.report until the driver asks for its next
        # result, so it is at most one report past its last row, and it reports nothing more while stopped. At its
        # second row its actor has answered Tune's request for the first row's checkpoint (an actor runs its calls
        # in order), so that one is registered even though the actor answers nothing more.
        held_trial, pid = wait_until(an_early_trial, "a trial's second report", timeout=300)
        held += freeze([pid])
        wait_until(one_done_and_the_frozen_one_saved_with_a_checkpoint, "another trial to finish in Tune's saved state",
                   timeout=300)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL
    before = rows_by_trial(sweep)  # final: the driver wrote every row there is
    saved = saved_trial_states(sweep)
    finished_before = {f"trial_{t}" for t, (status, _) in saved.items() if status == "TERMINATED"}
    assert f"trial_{held_trial}" not in finished_before and before[f"trial_{held_trial}"][-1]["step"] < STEPS
    actors = {row["pid"] for rows in before.values() for row in rows}
    # The dead driver's trial actors end (Ray kills them) before the resumed sweep asks for their CPUs.
    wait_until(lambda: not any(alive(p) for p in actors), "Ray to end the dead driver's trial actors", timeout=60)

    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tuner", "resume", "killed", "--storage", str(tmp_path / "sweeps"),
                        "--address", ray_head.gcs], env=cli_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    after = rows_by_trial(sweep)
    summary = json.loads((sweep / "summary.json").read_text())
    known = {f"trial_{t['trial_id']}" for t in summary["trials"]}
    assert known >= {f"trial_{t}" for t in saved}
    # A trial started after Tune's last save is not in its saved state: resume runs a new one in its place (the
    # searcher did not start the sweep over: 3 trials in all).
    orphans = set(after) - known
    assert len(summary["trials"]) == 3 and all(t not in finished_before for t in orphans)
    on_disk = after
    before = {t: rows for t, rows in before.items() if t in known}
    after = {t: rows for t, rows in after.items() if t in known}
    assert all(t["state"] == "completed" for t in summary["trials"])
    rerun, replayed = 0, {}
    for trial, rows in before.items():
        assert after[trial][:len(rows)] == rows  # no reported row lost or rewritten
        assert after[trial][-1]["step"] == STEPS
        if trial in finished_before:
            rerun += after[trial] != rows
            continue
        # Continued from the last checkpoint in Tune's saved state (a second older than the kill at most); a trial
        # whose last report came after that save trains its last steps again, to the same losses.
        new = after[trial][len(rows):]
        resumed_at = new[0]["resumed_at_step"] if new else STEPS
        assert resumed_at in {0, *(x["step"] for x in rows)}
        replayed[trial] = [x for x in new if x["step"] <= (rows[-1]["step"] if rows else 0)]
        for x in replayed[trial]:  # a step trained again after the restore gives the same losses, bit for bit
            first = next(r for r in rows if r["step"] == x["step"])
            assert (x["train_loss"], x["val_loss"]) == (first["train_loss"], first["val_loss"])
    held = after[f"trial_{held_trial}"]
    assert held[len(before[f"trial_{held_trial}"])]["resumed_at_step"] > 0  # the frozen one: from its checkpoint
    assert rerun == 0
    with sqlite3.connect(db) as c:
        stored = c.execute("select count(*) from results").fetchone()[0]
        status = c.execute("select status from sweeps where name = 'killed'").fetchone()[0]
        running = c.execute("select count(*) from trials where status = 'running'").fetchone()[0]
    # One row per (trial, iteration): a replayed iteration replaces its (identical) row. A replaced trial's rows stay,
    # as on disk: nothing it reported is dropped.
    assert stored == sum(len({x["training_iteration"] for x in rows}) for rows in on_disk.values())
    assert status == "finished" and running == 0  # a replaced trial ends stopped, not running forever
    print(f"driver killed with {len(finished_before)} finished and {len(before) - len(finished_before)} unfinished "
          f"trials, {sum(map(len, before.values()))} rows; after resume ({time.monotonic() - started:.0f} s): "
          f"{sum(map(len, after.values()))} rows, {rerun} re-runs, "
          f"{sum(map(len, replayed.values()))} rows replayed after the restore, {len(orphans)} trial(s) started "
          f"after Tune's last save and replaced")
