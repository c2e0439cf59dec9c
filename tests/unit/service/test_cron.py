"""Scheduled sweeps without a cluster: cron and due times, exactly-once firing across scheduler restarts on one SQLite
store (a fake cluster that refuses a job id it already holds, as Ray does), recovery of runs claimed but not
submitted, warm starts from the store, and the CLI's exit codes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tuner import store
from tuner.service import cron
from tuner.service.cron import CronScheduler, ScheduleError
from tuner.service.jobs import JobExists, RemoteError

CRON = "0 2 * * *"
CREATED = datetime(2030, 1, 1, 0, 0, tzinfo=timezone.utc)
ADDRESS = "http://head.example:8265"


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2030, 1, day, hour, minute, second, tzinfo=timezone.utc)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeCluster:
    """Ray's Jobs API as the scheduler sees it: one job per submission id; a second submission of an id is refused."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreachable: int = 0  # fail this many submissions as an unreachable cluster would
    attempts: int = 0

    def submit(self, spec_path: str | Path, overrides: list[str], address: str | None, *,
               submission_id: str | None = None, store: str | None = None) -> str:
        self.attempts += 1
        if self.unreachable:
            self.unreachable -= 1
            raise RemoteError(f"cannot reach a Ray cluster at {address}")
        assert submission_id
        if submission_id in self.jobs:
            raise JobExists(f"the cluster at {address} already has a job {submission_id}")
        self.jobs[submission_id] = {"spec": str(spec_path), "overrides": list(overrides), "address": address,
                                    "store": store}
        return submission_id


@pytest.fixture
def spec_file(tmp_path, tiny_raw) -> Path:
    raw = tiny_raw(name="nightly", storage=str(tmp_path / "sweeps"),
                   search={"space": {"train.lr": {"loguniform": [1.0e-3, 1.0e-2]},
                                     "train.batch_size": {"choice": [4, 8]}}})
    path = tmp_path / "job" / "spec.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "tuner.db"


def engine_on(db: Path) -> Any:
    return store.open_store(str(db), db.parent)


def add(db: Path, spec_file: Path, **kw: Any) -> dict[str, Any]:
    kw = {"address": ADDRESS, "overrides": [], "now": CREATED, **kw}
    return cron.add(engine_on(db), spec_file, kw.pop("cron", CRON), **kw)


def runs(db: Path, name: str = "nightly") -> list[dict[str, Any]]:
    e = engine_on(db)
    sid = next(s["id"] for s in store.list_schedules(e) if s["name"] == name)
    return store.schedule_runs(e, sid)


# ---- cron and due times ---------------------------------------------------------------------------------------


def test_cron_is_checked_and_normalised():
    assert cron.check_cron("  0  2 * *   * ") == "0 2 * * *"
    assert cron.check_cron("@daily") == "@daily"
    for bad in ("0 2 * *", "0 0 2 * * *", "61 2 * * *", "every night", "@reboot"):
        with pytest.raises(ScheduleError, match="--cron") as e:
            cron.check_cron(bad)
        assert "\n" not in str(e.value)


def test_the_latest_fire_time_after_creation_is_due():
    assert cron.latest_due(CRON, CREATED, utc(1, 1, 59, 59)) is None
    assert cron.latest_due(CRON, CREATED, utc(1, 2)) == utc(1, 2)  # exactly at the fire time
    assert cron.latest_due(CRON, CREATED, utc(1, 2, 0, 30)) == utc(1, 2)
    assert cron.latest_due(CRON, CREATED, utc(4, 3)) == utc(4, 2)  # the latest of several missed ones
    assert cron.latest_due(CRON, utc(1, 2), utc(1, 2, 30)) is None  # never a time at or before creation
    assert cron.latest_due(CRON, utc(1, 2, 30), utc(1, 23)) is None
    assert cron.next_due(CRON, CREATED, utc(1, 2)) == utc(2, 2)
    assert cron.next_due(CRON, utc(5, 0), utc(1, 0)) == utc(5, 2)  # not before creation either
    assert cron.fire_times_between(CRON, utc(1, 2), utc(4, 2)) == 2
    assert cron.fire_times_between("* * * * *", utc(1, 0), utc(31, 0)) == cron.MAX_COUNTED
    assert cron.submission_id("nightly", utc(4, 2)) == "tuner-sched-nightly-20300104T0200"
    assert cron.sweep_name("lm", utc(4, 2)) == "lm-20300104-0200"


# ---- exactly once ---------------------------------------------------------------------------------------------


def test_a_due_run_fires_once_across_a_restart(db, spec_file):
    add(db, spec_file)
    cluster, clock = FakeCluster(), Clock(utc(1, 2, 0, 30))
    first = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit)
    fired = first.tick()
    assert [(f.status, f.sweep, f.job_id) for f in fired] == [
        ("submitted", "nightly-20300101-0200", "tuner-sched-nightly-20300101T0200")]
    assert first.tick() == []

    restarted = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit)
    assert restarted.tick() == []
    assert list(cluster.jobs) == ["tuner-sched-nightly-20300101T0200"] and cluster.attempts == 1
    job = cluster.jobs["tuner-sched-nightly-20300101T0200"]
    assert job["spec"] == str(spec_file) and job["address"] == ADDRESS
    assert job["overrides"] == ["name=nightly-20300101-0200"]  # no previous run: cold
    assert job["store"] == f"sqlite:///{db}"  # the run records where the next run looks

    clock.now = utc(2, 2, 0, 5)
    assert [f.sweep for f in restarted.tick()] == ["nightly-20300102-0200"]
    assert len(cluster.jobs) == 2
    assert [(r["status"], r["job_id"]) for r in runs(db)] == [
        ("submitted", "tuner-sched-nightly-20300102T0200"), ("submitted", "tuner-sched-nightly-20300101T0200")]


def test_one_fire_time_is_claimed_once():
    e = store.open_store("sqlite://", ".")  # in memory
    sched = store.add_schedule(e, "x", spec_path="/s.yaml", cron=CRON, address=ADDRESS, overrides=[], warm_start=3,
                               created_at=CREATED)
    assert store.claim_run(e, sched["id"], utc(1, 2), "a") is True
    assert store.claim_run(e, sched["id"], utc(1, 2), "a") is False
    assert store.list_schedules(e)[0]["last_fired"] == utc(1, 2)


def test_two_schedulers_claiming_the_same_fire_times_at_once_get_one_run_each(store_url, tmp_path):
    """Two scheduler processes' worth of engines race for the same 30 fire times, released together by a barrier:
    every fire time is claimed exactly once (the unique (schedule, due time) key decides, on SQLite and PostgreSQL)."""
    import threading

    setup = store.open_store(store_url, tmp_path)
    sched = store.add_schedule(setup, "x", spec_path="/s.yaml", cron=CRON, address=ADDRESS, overrides=[],
                               warm_start=3, created_at=CREATED)
    engines = [store.open_store(store_url, tmp_path) for _ in range(2)]
    due = [utc(1 + i // 24, i % 24) for i in range(30)]
    won: list[list[datetime]] = [[], []]
    barrier = threading.Barrier(2)

    def claim(k: int) -> None:
        for t in due:
            barrier.wait(timeout=30)  # both ask for this fire time at the same moment
            if store.claim_run(engines[k], sched["id"], t, f"run-{k}-{t:%d%H}"):
                won[k].append(t)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(won[0] + won[1]) == due  # each fire time once, none lost
    assert len(store.schedule_runs(setup, sched["id"])) == 30
    for e in (setup, *engines):
        e.dispose()


def test_missed_fire_times_coalesce_into_the_latest(db, spec_file, caplog):
    add(db, spec_file)
    cluster = FakeCluster()
    with caplog.at_level(logging.INFO, logger="tuner.service.cron"):
        fired = CronScheduler(engine_on(db), clock=Clock(utc(4, 3)), submit=cluster.submit).tick()
    assert [f.due_at for f in fired] == [utc(4, 2)] and len(cluster.jobs) == 1
    assert "3 fire time(s)" in caplog.text and "running only the latest, 2030-01-04 02:00 UTC" in caplog.text
    assert "submitted job tuner-sched-nightly-20300104T0200, sweep nightly-20300104-0200" in caplog.text
    # Nor does a scheduler that finds an older fire time unclaimed go back to it.
    assert CronScheduler(engine_on(db), clock=Clock(utc(4, 23)), submit=cluster.submit).tick() == []


def test_a_run_claimed_but_never_submitted_is_submitted_by_the_next_scheduler(db, spec_file):
    sched = add(db, spec_file)
    store.claim_run(engine_on(db), sched["id"], utc(1, 2), cron.submission_id("nightly", utc(1, 2)))  # then died
    cluster = FakeCluster()
    fired = CronScheduler(engine_on(db), clock=Clock(utc(1, 2, 5)), submit=cluster.submit).tick()
    assert [(f.status, f.job_id) for f in fired] == [("submitted", "tuner-sched-nightly-20300101T0200")]
    assert len(cluster.jobs) == 1


def test_a_run_the_cluster_got_before_the_scheduler_died_is_not_submitted_again(db, spec_file):
    add(db, spec_file)
    cluster, clock = FakeCluster(), Clock(utc(1, 2, 1))
    CronScheduler(engine_on(db), clock=clock, submit=cluster.submit).tick()
    store.update_run(engine_on(db), runs(db)[0]["id"], status="claimed", job_id=None)  # died before recording it
    fired = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit).tick()
    assert [(f.status, f.job_id) for f in fired] == [("submitted", "tuner-sched-nightly-20300101T0200")]
    assert cluster.attempts == 2 and len(cluster.jobs) == 1  # Ray refused the second: it held that id


def test_an_unreachable_cluster_is_retried_at_the_next_tick(db, spec_file, caplog):
    add(db, spec_file)
    cluster, clock = FakeCluster(unreachable=1), Clock(utc(1, 2, 1))
    scheduler = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit)
    with caplog.at_level(logging.INFO, logger="tuner.service.cron"):
        assert [f.status for f in scheduler.tick()] == ["claimed"]
    assert runs(db)[0]["error"] == f"cannot reach a Ray cluster at {ADDRESS}" and not cluster.jobs
    assert "retrying at the next tick" in caplog.text
    clock.now = utc(1, 2, 2)
    assert [f.status for f in scheduler.tick()] == ["submitted"]
    assert len(cluster.jobs) == 1 and runs(db)[0]["error"] is None


def test_a_claimed_run_overtaken_by_a_newer_fire_time_is_dropped(db, spec_file):
    add(db, spec_file)
    cluster, clock = FakeCluster(unreachable=1), Clock(utc(1, 2, 1))
    CronScheduler(engine_on(db), clock=clock, submit=cluster.submit).tick()  # cluster down: stays claimed
    clock.now = utc(2, 2, 1)
    fired = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit).tick()
    assert [f.due_at for f in fired] == [utc(2, 2)] and list(cluster.jobs) == ["tuner-sched-nightly-20300102T0200"]
    old = runs(db)[1]
    assert old["status"] == "failed" and "overtaken by the run due 2030-01-02 02:00 UTC" in old["error"]


def test_a_spec_that_became_invalid_fails_its_run_and_the_others_still_fire(db, spec_file, tiny_raw):
    add(db, spec_file)
    other = spec_file.parent / "other.yaml"
    other.write_text(yaml.safe_dump(tiny_raw(name="other", storage=str(spec_file.parent.parent / "sweeps"))))
    add(db, other)
    spec_file.write_text(spec_file.read_text().replace("max_steps: 20", "max_steps: -1"))
    cluster = FakeCluster()
    fired = CronScheduler(engine_on(db), clock=Clock(utc(1, 2, 1)), submit=cluster.submit).tick()
    assert sorted((f.schedule, f.status) for f in fired) == [("nightly", "failed"), ("other", "submitted")]
    assert "train.max_steps" in runs(db)[0]["error"]


# ---- warm start -----------------------------------------------------------------------------------------------


def record_sweep(db: Path, name: str, trials: list[tuple[dict[str, Any], float | None]]) -> None:
    e = engine_on(db)
    sweep_id = store.start_sweep(e, name, spec={}, storage=f"/sweeps/{name}", metric="val_loss", mode="min")
    for i, (config, value) in enumerate(trials):
        store.record_trial(e, sweep_id, f"t{i}", config=config, status="completed")
        if value is not None:
            store.record_result(e, sweep_id, f"t{i}", {"training_iteration": 1, "val_loss": value})
    store.finish_sweep(e, sweep_id, "finished")


def points_of(job: dict[str, Any]) -> list[dict[str, Any]] | None:
    found = [o for o in job["overrides"] if o.startswith("search.points_to_evaluate=")]
    return json.loads(found[0].partition("=")[2]) if found else None


def test_each_run_starts_from_the_previous_runs_best_configs(db, spec_file):
    add(db, spec_file, warm_start=2)
    cluster, clock = FakeCluster(), Clock(utc(1, 2, 1))
    scheduler = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit)
    scheduler.tick()
    record_sweep(db, "nightly-20300101-0200", [
        ({"train.lr": 5e-3, "train.batch_size": 4}, 3.1), ({"train.lr": 2e-3, "train.batch_size": 8}, 2.5),
        ({"train.lr": 1.5e-3, "train.batch_size": 8}, None), ({"train.lr": 9e-3, "train.batch_size": 4}, 2.9)])
    clock.now = utc(2, 2, 1)
    assert [f.warm for f in scheduler.tick()] == [2]
    job = cluster.jobs["tuner-sched-nightly-20300102T0200"]
    assert points_of(job) == [{"train.lr": 2e-3, "train.batch_size": 8}, {"train.lr": 9e-3, "train.batch_size": 4}]
    assert job["overrides"][0] == "name=nightly-20300102-0200"
    assert runs(db)[0]["warm_points"] == 2


def test_warm_start_keeps_only_the_current_space_and_skips_runs_without_results(db, spec_file):
    add(db, spec_file)
    cluster, clock = FakeCluster(), Clock(utc(1, 2, 1))
    scheduler = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit)
    scheduler.tick()
    record_sweep(db, "nightly-20300101-0200", [({"train.lr": 4e-3, "train.batch_size": 4, "model.dropout": 0.1}, 2.0),
                                               ({"train.lr": 4e-3, "train.batch_size": 4, "model.dropout": 0.2}, 2.2)])
    clock.now = utc(2, 2, 1)
    scheduler.tick()  # its sweep never reaches the store (the job failed on the cluster)
    clock.now = utc(3, 2, 1)
    scheduler.tick()
    # The newest earlier run with results is the first; dropout is not tuned now; the two configs are then one.
    assert points_of(cluster.jobs["tuner-sched-nightly-20300103T0200"]) == [{"train.lr": 4e-3, "train.batch_size": 4}]


def test_configs_that_no_longer_fit_the_spec_start_the_run_cold(db, spec_file, caplog):
    add(db, spec_file)
    cluster, clock = FakeCluster(), Clock(utc(1, 2, 1))
    scheduler = CronScheduler(engine_on(db), clock=clock, submit=cluster.submit)
    scheduler.tick()
    record_sweep(db, "nightly-20300101-0200", [({"train.lr": 0.5, "train.batch_size": 4}, 2.0)])  # lr out of range
    clock.now = utc(2, 2, 1)
    with caplog.at_level(logging.INFO, logger="tuner.service.cron"):
        assert [(f.status, f.warm) for f in scheduler.tick()] == [("submitted", 0)]
    assert points_of(cluster.jobs["tuner-sched-nightly-20300102T0200"]) is None
    assert "do not fit the spec as it is now" in caplog.text and "search.points_to_evaluate.0.train.lr" in caplog.text


def test_best_configs_reads_the_ranked_leaderboard(db):
    record_sweep(db, "s1", [({"x": 1}, 0.5), ({"x": 2}, 0.1), ({"x": 3}, 0.3)])
    e = engine_on(db)
    submitted = {"status": "submitted", "sweep_name": "s1", "due_at": utc(1, 2)}
    assert cron.best_configs(e, [submitted], ["x"], 2) == ("s1", [{"x": 2}, {"x": 3}])
    assert cron.best_configs(e, [{**submitted, "status": "failed"}], ["x"], 2) is None
    assert cron.best_configs(e, [{**submitted, "sweep_name": "gone"}], ["x"], 2) is None


# ---- CLI ------------------------------------------------------------------------------------------------------


def tuner(*args: str, env: dict[str, str] | None = None) -> Any:
    from tuner.cli import app

    return CliRunner().invoke(app, list(args), env={"RAY_ADDRESS": "", **(env or {})})


def test_cli_add_list_remove(db, spec_file):
    r = tuner("schedule", "add", str(spec_file), "--cron", "30 1 * * *", "--address", ADDRESS, "--store", str(db),
              "--set", "search.num_trials=3")
    assert r.exit_code == 0, r.output
    assert "added schedule nightly" in r.stdout and "'30 1 * * *'" in r.stdout
    [s] = store.list_schedules(engine_on(db))
    assert (s["spec_path"], s["overrides"], s["warm_start"]) == (str(spec_file), ["search.num_trials=3"], 3)
    r = tuner("schedule", "list", "--store", str(db))
    assert r.exit_code == 0 and "nightly" in r.stdout and "30 1 * * *" in r.stdout
    r = tuner("schedule", "add", str(spec_file), "--cron", "@hourly", "--store", str(db),
              env={"RAY_ADDRESS": ADDRESS})
    assert r.exit_code == 2 and "already holds a schedule named 'nightly'" in r.stderr
    assert tuner("schedule", "remove", "nightly", "--store", str(db)).exit_code == 0
    assert store.list_schedules(engine_on(db)) == []


@pytest.mark.parametrize(("args", "expected"), [
    (["--cron", "0 2 * *"], "--cron '0 2 * *': expected five fields"),
    (["--cron", "0 2 * * *", "--set", "train.lr=-1"], "train.lr"),
    (["--cron", "0 2 * * *", "--name", "no spaces"], "--name 'no spaces'"),
])
def test_cli_add_refuses_bad_input_and_stores_nothing(db, spec_file, args, expected):
    r = tuner("schedule", "add", str(spec_file), "--address", ADDRESS, "--store", str(db), *args)
    assert r.exit_code == 2 and expected in r.stderr and "Traceback" not in r.output
    assert not db.exists()


def test_cli_add_needs_an_address(db, spec_file):
    r = tuner("schedule", "add", str(spec_file), "--cron", CRON, "--store", str(db))
    assert r.exit_code == 2 and "--address" in r.stderr and "RAY_ADDRESS" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_remove_of_an_unknown_schedule(db, spec_file):
    add(db, spec_file)
    r = tuner("schedule", "remove", "nope", "--store", str(db))
    assert r.exit_code == 2 and "no schedule named 'nope'" in r.stderr


def test_cli_scheduler_once_records_an_unreachable_cluster_and_exits_1(db, spec_file):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    add(db, spec_file, address=closed, now=datetime(2020, 1, 1, tzinfo=timezone.utc))
    r = tuner("scheduler", "--once", "--store", str(db))
    assert r.exit_code == 1, r.output
    assert "cannot reach a Ray cluster" in r.stderr and "retrying at the next tick" in r.stderr
    assert runs(db)[0]["status"] == "claimed"
    assert tuner("scheduler", "--once", "--store", str(db / "missing.db")).exit_code == 2


def test_the_loop_logs_a_failed_tick_and_goes_on(db, spec_file, caplog, monkeypatch):
    # An in-process `tuner scheduler` (the CLI tests) logs to stderr only: let the records reach caplog again.
    monkeypatch.setattr(logging.getLogger("tuner.service.cron"), "propagate", True)
    add(db, spec_file)
    scheduler = CronScheduler(engine_on(db), clock=Clock(utc(1, 2, 1)), submit=FakeCluster().submit)
    outcomes: list[Exception | None] = [RuntimeError("store down"), None]

    def tick() -> list[Any]:
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome
        return []

    scheduler.tick = tick  # type: ignore[method-assign]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    with caplog.at_level(logging.INFO, logger="tuner.service.cron"), pytest.raises(KeyboardInterrupt):
        scheduler.run_forever(5, sleep=sleep)
    assert sleeps == [5, 5] and "tick failed: RuntimeError: store down" in caplog.text


def test_a_store_from_before_warm_start_is_upgraded(db, spec_file):
    import sqlite3

    with sqlite3.connect(db) as c:  # the schedules table as tuner created it before scheduled sweeps existed
        c.execute("CREATE TABLE schedules (id INTEGER PRIMARY KEY, name VARCHAR(255) UNIQUE, spec_path TEXT, "
                  "cron VARCHAR(255), address TEXT, overrides JSON, last_fired DATETIME, enabled BOOLEAN, "
                  "created_at DATETIME)")
    add(db, spec_file)
    assert store.list_schedules(engine_on(db))[0]["warm_start"] == 3
