"""`tuner resume` after the sweep driver is SIGKILLed mid-sweep, on a real head: finished trials are not re-run,
unfinished ones continue from their checkpoints, and no reported result row is lost (on disk or in the store)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VENV_BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    e = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    e.pop("RAY_ADDRESS", None)
    return e


def rows_by_trial(sweep: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sorted(sweep.glob("trial_*/result.json")):
        out[f.parent.name] = [json.loads(line) for line in f.read_text().splitlines()]
    return out


def test_resume_after_the_driver_is_killed(ray_head, tiny_raw, tmp_path):
    raw = tiny_raw(name="killed", storage=str(tmp_path / "sweeps"),
                   train={"max_steps": 60, "eval_every": 5},
                   search={"algorithm": "tpe", "scheduler": "fifo", "num_trials": 3, "max_concurrent": 2})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    sweep = tmp_path / "sweeps" / "killed"
    driver = subprocess.Popen([sys.executable, "-m", "tuner", "run", str(tmp_path / "spec.yaml"), "--address",
                               ray_head.gcs], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 300
    before: dict[str, list[dict]] = {}
    while driver.poll() is None and time.monotonic() < deadline:
        before = rows_by_trial(sweep)
        done = [t for t, rows in before.items() if rows and rows[-1]["step"] == 60]
        running = [t for t, rows in before.items() if rows and rows[-1]["step"] < 60]
        if done and running:
            os.kill(driver.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL, "the sweep ended before its driver could be killed"
    before = rows_by_trial(sweep)  # what had been written when the driver died
    finished_before = {t for t, rows in before.items() if rows and rows[-1]["step"] == 60}
    time.sleep(3)  # Ray ends the dead driver's trial actors

    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tuner", "resume", "killed", "--storage", str(tmp_path / "sweeps"),
                        "--address", ray_head.gcs], env=env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    after = rows_by_trial(sweep)
    summary = json.loads((sweep / "summary.json").read_text())
    known = {f"trial_{t['trial_id']}" for t in summary["trials"]}
    # A trial started in the last second before the kill is not in Tune's saved state: resume runs a new one in its
    # place (the searcher did not start the sweep over: 3 trials in all).
    orphans = set(after) - known
    assert len(summary["trials"]) == 3 and all(not before.get(t) or before[t][-1]["step"] < 60 for t in orphans)
    before = {t: rows for t, rows in before.items() if t in known}
    after = {t: rows for t, rows in after.items() if t in known}
    assert all(t["state"] == "completed" for t in summary["trials"])
    rerun, replayed = 0, {}
    for trial, rows in before.items():
        assert after[trial][:len(rows)] == rows  # no reported row lost or rewritten
        if trial in finished_before:
            rerun += after[trial] != rows
        else:  # continued from the last checkpoint in Tune's saved state (at most a second older than the kill)
            new = after[trial][len(rows):]
            assert new[-1]["step"] == 60
            resumed_at = new[0]["resumed_at_step"]
            assert resumed_at in {0, *(x["step"] for x in rows)}
            replayed[trial] = [x for x in new if x["step"] <= (rows[-1]["step"] if rows else 0)]
            for x in replayed[trial]:  # a step trained again after the restore gives the same losses, bit for bit
                first = next(r for r in rows if r["step"] == x["step"])
                assert (x["train_loss"], x["val_loss"]) == (first["train_loss"], first["val_loss"])
    assert rerun == 0
    with sqlite3.connect(tmp_path / "sweeps" / "tuner.db") as db:
        stored = db.execute("select count(*) from results").fetchone()[0]
        status = db.execute("select status from sweeps where name = 'killed'").fetchone()[0]
    # One row per (trial, iteration): a replayed iteration replaces its (identical) row.
    assert stored == sum(len({x["training_iteration"] for x in rows}) for rows in after.values())
    assert status == "finished"
    print(f"driver killed with {len(finished_before)} finished and {len(before) - len(finished_before)} unfinished "
          f"trials, {sum(map(len, before.values()))} rows; after resume ({time.monotonic() - started:.0f} s): "
          f"{sum(map(len, after.values()))} rows, {rerun} re-runs, "
          f"{sum(map(len, replayed.values()))} rows replayed after the restore, {len(orphans)} trial(s) started "
          f"in the last second and replaced")
