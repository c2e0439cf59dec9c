"""Sweeps whose storage is a bucket (``storage: s3://...``), against a real S3 API on loopback (moto's server):
everything a sweep writes lands in the bucket, and the bucket alone is enough to resume, read and report it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml
from support import cli_env, trial_states, wait_until

from tuner.spec import validate
from tuner.sweep.driver import extend_sweep, run_sweep

pytestmark = pytest.mark.integration


def listing(s3, prefix: str) -> list[str]:
    """Every file under ``prefix`` (``bucket/key``), relative to it."""
    infos = s3.filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(i.path.removeprefix(prefix + "/") for i in infos if i.type == pafs.FileType.File)


def read(s3, path: str) -> str:
    with s3.filesystem().open_input_stream(path) as f:
        return f.read().decode()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """The driver's local mirror of the bucket (TUNER_CACHE), empty for each test."""
    d = tmp_path / "cache"
    monkeypatch.setenv("TUNER_CACHE", str(d))
    return d


def test_an_llm_sweep_writes_everything_to_the_bucket(ray_local, s3, tiny_raw, cache, monkeypatch):
    storage = s3.bucket("sweeps-llm") + "/team"
    spec = validate(tiny_raw(storage=storage, storage_endpoint=s3.endpoint))
    result = run_sweep(spec)
    prefix = f"sweeps-llm/team/{spec.name}"
    files = listing(s3, prefix)
    for name in ("tuner.pkl", "tuner_spec.json", "summary.json", "leaderboard.csv", "report.html",
                 "best_model/config.json", "best_model/model.safetensors"):
        assert name in files, f"{name} is not in the bucket: {files}"
    assert any(f.startswith("experiment_state-") for f in files)
    summary = json.loads(read(s3, f"{prefix}/summary.json"))
    assert summary == json.loads((spec.sweep_dir / "summary.json").read_text())
    assert summary["best"]["trial_id"] == result.best["trial_id"]
    assert len(summary["trials"]) == 2 and all(t["state"] == "completed" for t in summary["trials"])
    for t in summary["trials"]:  # each trial's results and checkpoints are in the bucket, named by URI
        assert t["path"].startswith(f"s3://{prefix}/trial_") and t["checkpoint"].startswith(t["path"] + "/")
        trial = t["path"].removeprefix("s3://").removeprefix(prefix + "/")
        assert f"{trial}/result.json" in files
        assert any(f.startswith(f"{trial}/checkpoint_") for f in files)
    assert summary["best_model"] == f"s3://{prefix}/best_model"

    # The bucket alone: with the local mirror gone, `tuner results` and `tuner report` read the sweep from it.
    shutil.rmtree(cache)
    env = cli_env(TUNER_CACHE=str(cache), AWS_ENDPOINT_URL=s3.endpoint)
    shown = subprocess.run([sys.executable, "-m", "tuner", "results", f"s3://{prefix}", "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["best"] == summary["best"]
    report = subprocess.run([sys.executable, "-m", "tuner", "report", f"s3://{prefix}"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == f"s3://{prefix}/report.html"

    # `tuner extend` from the bucket: the new trial's experiment lands beside the sweep's, the summary covers all.
    shutil.rmtree(cache)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    extended = extend_sweep(f"s3://{prefix}", 1)
    assert len(extended.trials) == 3
    assert any(f.startswith("extend-1/trial_") for f in listing(s3, prefix))
    assert json.loads(read(s3, f"{prefix}/summary.json"))["extensions"][0]["dir"] == "extend-1"


CHECKPOINTING = '''
import json
import os
import tempfile
import time

from ray import tune


def train(config):
    """REPORTS reports, SLEEP_S apart, each with a checkpoint. With GATE set, the trial with x > 0.5 waits at its
    third report until that file exists."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["i"]
    for i in range(start + 1, REPORTS + 1):
        while os.environ.get("GATE") and config["x"] > 0.5 and i == 3 and not os.path.exists(os.environ["GATE"]):
            time.sleep(0.05)
        time.sleep(SLEEP_S)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"i": i}, f)
            tune.report({"loss": config["x"] + 1 / i, "resumed_at": start, "pid": os.getpid(), "at": time.time()},
                        checkpoint=tune.Checkpoint.from_directory(d))
'''


def objective(reports: int, sleep_s: float = 0.0) -> str:
    """CHECKPOINTING's source, for a module a spec names (objective:train)."""
    return f"REPORTS, SLEEP_S = {reports}, {sleep_s}\n{CHECKPOINTING}"


def test_resume_from_the_bucket_alone_after_the_driver_is_killed(ray_local, s3, tmp_path, cache):
    """The driver is SIGKILLed while one trial has finished and the other waits at a gate with checkpoints; the local
    mirror is deleted; `tuner resume s3://...` finishes the sweep from the bucket: the finished trial does not run
    again and the other continues from its last checkpoint."""
    storage = s3.bucket("sweeps-resume")
    gate = tmp_path / "gate"
    (tmp_path / "objective.py").write_text(objective(6))
    spec = {"name": "gated", "storage": storage, "storage_endpoint": s3.endpoint, "trainable": "objective:train",
            "search": {"algorithm": "grid", "scheduler": "fifo", "metric": "loss", "mode": "min",
                       "max_concurrent": 2, "time_attr": "training_iteration",
                       "space": {"x": {"grid": [0.2, 0.8]}}},
            "resources": {"cpus_per_worker": 0.5}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = cli_env(TUNER_CACHE=str(cache), GATE=str(gate))
    driver = subprocess.Popen([sys.executable, "-m", "tuner", "run", "spec.yaml"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    prefix = "sweeps-resume/gated"

    def saved_state() -> dict[str, int] | None:
        """Tune's experiment state in the bucket, once it shows one trial finished (all its rows there too) and the
        other's checkpoint."""
        if driver.poll() is not None:
            raise AssertionError(f"the driver ended early: {driver.stdout.read()[-3000:]}")
        states = [f for f in listing(s3, prefix) if f.startswith("experiment_state-")]
        if not states:
            return None
        try:
            saved = trial_states(read(s3, f"{prefix}/{states[-1]}")).values()
        except (OSError, ValueError):  # being replaced
            return None
        done = [s for s, _ in saved if s == "TERMINATED"]
        checkpointed = [c for s, c in saved if s == "RUNNING" and c]
        # Tune uploads the experiment's files one by one: the state may land before the finished trial's rows.
        rows = [len(read(s3, f"{prefix}/{f}").splitlines()) for f in listing(s3, prefix) if f.endswith("result.json")]
        return {"done": len(done)} if done and checkpointed and 6 in rows else None

    try:
        wait_until(saved_state, "one trial finished and the other's checkpoint, in the bucket", timeout=240,
                   every=0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    files = listing(s3, prefix)
    finished_rows = {f: read(s3, f"{prefix}/{f}") for f in files if f.endswith("result.json")}
    shutil.rmtree(cache)  # the local mirror (the driver's files and its store): the bucket alone must do
    gate.touch()
    started = time.monotonic()
    resumed = subprocess.run([sys.executable, "-m", "tuner", "resume", f"s3://{prefix}"], cwd=tmp_path,
                             env={**env, "AWS_ENDPOINT_URL": s3.endpoint}, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    print(f"resumed in {time.monotonic() - started:.1f} s")
    summary = json.loads(read(s3, f"{prefix}/summary.json"))
    by_x = {t["config"]["x"]: t for t in summary["trials"]}
    assert set(by_x) == {0.2, 0.8} and all(t["state"] == "completed" for t in summary["trials"])
    assert not summary["interrupted"]
    rows = {x: [json.loads(line) for line in read(s3, t["path"].removeprefix("s3://") + "/result.json").splitlines()]
            for x, t in by_x.items()}
    assert [r["training_iteration"] for r in rows[0.2]] == list(range(1, 7))  # finished before: not run again
    assert read(s3, by_x[0.2]["path"].removeprefix("s3://") + "/result.json") in finished_rows.values()
    after = [r for r in rows[0.8] if r["resumed_at"] > 0]
    assert after and after[0]["resumed_at"] >= 1  # continued from a checkpoint in the bucket, not from scratch
    assert [r["training_iteration"] for r in rows[0.8]][-1] == 6


@pytest.mark.slow
def test_a_sweep_rides_out_20_s_of_an_unreachable_endpoint(ray_local, s3, tmp_path, cache, monkeypatch):
    """The bucket's endpoint refuses connections for 20 s mid-sweep: the trials' reports wait while their checkpoints'
    uploads retry (AWS's standard backoff, tuner.storage.RETRY_ATTEMPTS), then go on; the sweep finishes with every
    trial's results and final checkpoint in the bucket, none restarted."""
    from support import LoopbackProxy, stored_rows

    bucket = s3.bucket("outage")
    proxy = LoopbackProxy(s3.port).start()
    (tmp_path / "objective.py").write_text(objective(12, sleep_s=0.5))
    spec = validate({"name": "outage", "storage": bucket, "storage_endpoint": f"http://127.0.0.1:{proxy.port}",
                     "trainable": "objective:train",
                     "search": {"algorithm": "grid", "scheduler": "fifo", "metric": "loss", "mode": "min",
                                "max_concurrent": 2, "time_attr": "training_iteration",
                                "space": {"x": {"grid": [0.2, 0.8]}}},
                     "resources": {"cpus_per_worker": 0.5}}, spec_dir=str(tmp_path))
    out: dict = {}
    import threading

    sweep = threading.Thread(target=lambda: out.setdefault("result", run_sweep(spec)))
    sweep.start()
    db = spec.sweep_dir.parent / "tuner.db"
    try:
        wait_until(lambda: (rows := stored_rows(db, "outage")) and len(rows) == 2
                   and all(len(r) >= 3 for r in rows.values()) or None, "both trials reporting", timeout=120)
        proxy.stop()
        down = time.time()
        time.sleep(20)
        proxy.start()
        up = time.time()
    finally:
        sweep.join(timeout=400)
        proxy.stop()
    assert "result" in out, "the sweep did not finish"
    prefix = "outage/outage"
    files = listing(s3, prefix)
    summary = json.loads(read(s3, f"{prefix}/summary.json"))
    assert all(t["state"] == "completed" and t["status"] == "TERMINATED" for t in summary["trials"])
    for t in summary["trials"]:
        trial = t["path"].removeprefix(f"s3://{prefix}/")
        rows = [json.loads(line) for line in read(s3, f"{prefix}/{trial}/result.json").splitlines()]
        assert [r["training_iteration"] for r in rows] == list(range(1, 13))
        assert all(r["resumed_at"] == 0 for r in rows)  # never restarted: the reports waited for the endpoint
        assert f"{trial}/checkpoint_000011/state.json" in files  # the final checkpoint
        stalled = [r["at"] for r in rows if down <= r["at"] <= up]
        print(f"{trial}: {len(stalled)} report(s) while the endpoint was down")
