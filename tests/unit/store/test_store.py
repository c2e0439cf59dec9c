"""The sweep store on SQLite: round trips, one row per (trial, iteration), commit per result, ranking by mode."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tuner import store
from tuner.spec import SpecError, validate


def _sweep(engine: Any, name: str = "s", mode: str = "min", **kw: Any) -> int:
    return store.start_sweep(engine, name, spec={"name": name, "search": {"mode": mode}}, storage=f"/x/{name}",
                             metric="val_loss", mode=mode, **kw)


def _row(i: int, loss: float, **extra: Any) -> dict[str, Any]:
    return {"training_iteration": i, "val_loss": loss, "tokens": 100 * i, "time_total_s": 1.5 * i, **extra}


def test_default_store_is_wal_sqlite_under_storage(tmp_path):
    engine = store.open_store(None, tmp_path / "sweeps")
    assert str(engine.url) == f"sqlite:///{tmp_path / 'sweeps' / 'tuner.db'}"
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == store.BUSY_TIMEOUT_MS
        tables = {r[0] for r in c.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"sweeps", "trials", "results", "exploits", "schedules", "schedule_runs", "alembic_version"}
    assert store.store_url("my.db", tmp_path) == f"sqlite:///{Path('my.db').resolve()}"
    assert store.store_url("postgresql://u:pw@h/db", tmp_path) == "postgresql://u:pw@h/db"
    assert store.safe_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_unusable_stores_are_store_errors(tmp_path):
    with pytest.raises(store.StoreError, match="not a database URL"):
        store.open_store("://nothing", tmp_path)
    with pytest.raises(store.StoreError, match="knows no database"):
        store.open_store("nosuchdb://h/db", tmp_path)
    with pytest.raises(store.NoStore, match="no sweep store at"):
        store.open_store(None, tmp_path / "empty", create=False)
    assert not (tmp_path / "empty").exists()  # a reader creates nothing


def test_round_trip(tmp_path, store_url):
    engine = store.open_store(store_url, tmp_path)
    sid = _sweep(engine)
    store.record_trial(engine, sid, "a", config={"train.lr": np.float64(1e-3)}, status="running")
    assert store.record_result(engine, sid, "a", _row(1, 3.0))
    assert store.record_result(engine, sid, "a", _row(2, 2.5, nested={"x": np.int64(2)}))
    assert not store.record_result(engine, sid, "a", _row(3, float("nan"), extra=np.float32(0.5)))
    store.record_trial(engine, sid, "a", checkpoint="/ckpt/2")
    store.record_result(engine, sid, "b", _row(1, 2.7))  # a trial first heard of by its result
    store.finish_sweep(engine, sid, "finished", best={"trial_id": "a", "value": 2.5},
                       trials=[{"trial_id": "a", "state": "completed", "config": {"train.lr": 1e-3}, "value": 2.5},
                               {"trial_id": "b", "state": "stopped", "config": {}, "value": 2.7}])

    rows = store.trial_results(engine, "s", "a")
    assert [r["training_iteration"] for r in rows] == [1, 2, 3]
    assert rows[1]["nested"] == {"x": 2} and rows[2]["val_loss"] is None and rows[2]["extra"] == 0.5
    board = store.sweep_leaderboard(engine, "s")
    assert board["status"] == "finished" and board["finished_at"] is not None
    assert board["best_trial_id"] == "a" and board["best_value"] == 2.5
    a, b = board["leaderboard"]
    assert a == {"rank": 1, "trial_id": "a", "state": "completed", "value": 2.5, "config": {"train.lr": 1e-3},
                 "iterations": 3, "tokens": 300, "seconds": 4.5, "checkpoint": "/ckpt/2", "error": None}
    assert (b["trial_id"], b["state"], b["iterations"]) == ("b", "stopped", 1)
    assert board["trials"] == 2
    assert board["compute"] == {"trial_seconds": 6.0, "iterations": 4, "tokens": 400}
    [listed] = store.list_sweeps(engine)
    assert {k: listed[k] for k in ("name", "status", "trials", "best_value", "compute")} == {
        "name": "s", "status": "finished", "trials": 2, "best_value": 2.5, "compute": board["compute"]}
    assert store.find_sweep(engine, "s")["storage"] == "/x/s" and store.find_sweep(engine, "t") is None
    with pytest.raises(store.UnknownSweep, match="no sweep named 't'"):
        store.sweep_leaderboard(engine, "t")
    with pytest.raises(ValueError, match="trial status"):
        store.record_trial(engine, sid, "a", status="done")


def test_a_trial_the_summary_does_not_name_ends_stopped_with_its_rows(tmp_path, store_url):
    """tuner resume replaces a trial that started after Tune's last saved state; the store keeps what it reported,
    but a finished sweep shows nothing running."""
    engine = store.open_store(store_url, tmp_path)
    sid = _sweep(engine)
    for trial in ("a", "lost"):
        store.record_trial(engine, sid, trial, config={}, status="running")
        store.record_result(engine, sid, trial, _row(1, 3.0))
    store.finish_sweep(engine, sid, "finished", trials=[{"trial_id": "a", "state": "completed", "value": 3.0}])
    board = store.sweep_leaderboard(engine, "s")
    assert {t["trial_id"]: t["state"] for t in board["leaderboard"]} == {"a": "completed", "lost": "stopped"}
    assert store.list_sweeps(engine)[0]["running"] == 0
    assert len(store.trial_results(engine, "s", "lost")) == 1


def test_one_row_per_trial_and_iteration(tmp_path, store_url):
    engine = store.open_store(store_url, tmp_path)
    sid = _sweep(engine)
    store.record_result(engine, sid, "a", _row(1, 3.0))
    store.record_result(engine, sid, "a", _row(2, 2.0))
    store.record_result(engine, sid, "a", _row(2, 2.2))  # a driver restart replays iteration 2
    assert [(r["training_iteration"], r["val_loss"]) for r in store.trial_results(engine, "s", "a")] == [(1, 3.0),
                                                                                                         (2, 2.2)]
    with Session(engine) as s:
        trial = s.query(store.Trial).one()
        s.add(store.Result(trial_pk=trial.id, training_iteration=1, metrics={}))
        with pytest.raises(IntegrityError):
            s.commit()


def test_a_pbt_exploit_keeps_the_rows_it_repeats(tmp_path, store_url):
    """An exploited trial restarts from its donor's iteration count with a new config: its new rows are added, not
    written over the ones it reported before; a replay under the same config still replaces its row."""
    engine = store.open_store(store_url, tmp_path)
    sid = _sweep(engine)
    store.record_trial(engine, sid, "a", config={"train.lr": 1e-3}, status="running")
    for i, loss in ((1, 3.0), (2, 2.5), (3, 2.4)):
        store.record_result(engine, sid, "a", _row(i, loss))
    store.record_trial(engine, sid, "a", config={"train.lr": 1e-3})  # the driver restarted: same config
    store.record_result(engine, sid, "a", _row(3, 2.4))
    store.record_trial(engine, sid, "a", config={"train.lr": 2e-3})  # exploited a donor at its iteration 1
    store.record_result(engine, sid, "a", _row(2, 2.3))
    store.record_result(engine, sid, "a", _row(3, 2.1))
    rows = store.trial_results(engine, "s", "a")
    assert [(r["training_iteration"], r["val_loss"]) for r in rows] == [(1, 3.0), (2, 2.5), (3, 2.4), (2, 2.3),
                                                                        (3, 2.1)]


def test_each_result_is_committed_as_it_arrives(tmp_path, store_url):
    from sqlalchemy import create_engine, text

    writer = store.open_store(store_url, tmp_path)
    sid = _sweep(writer)
    reader = create_engine(store_url).connect()  # another connection, as `tuner sweeps show` during a sweep

    def rows() -> int:
        reader.rollback()  # a fresh snapshot each time
        return reader.execute(text("SELECT count(*) FROM results")).scalar_one()

    for i in range(1, 4):
        store.record_result(writer, sid, "a", _row(i, 1.0 / i))
        assert rows() == i  # while the writer's engine stays open
    other = store.open_store(store_url, tmp_path)
    assert store.sweep_leaderboard(other, "s")["leaderboard"][0]["iterations"] == 3
    assert store.list_sweeps(other)[0]["status"] == "running"
    reader.close()


@pytest.mark.parametrize("mode", ["min", "max"])
def test_leaderboard_ranks_by_mode(tmp_path, mode, store_url):
    engine = store.open_store(store_url, tmp_path)
    sid = _sweep(engine, mode=mode)
    for trial, value in [("a", 3.0), ("b", 1.0), ("c", 2.0)]:
        store.record_result(engine, sid, trial, _row(1, value))
    store.record_trial(engine, sid, "d", status="error", error="boom")  # no value: ranked last
    store.record_result(engine, sid, "b", _row(2, 0.5 if mode == "min" else 5.0))  # b's best improves

    board = store.sweep_leaderboard(engine, "s")
    expected = ["b", "a", "c", "d"] if mode == "max" else ["b", "c", "a", "d"]
    assert [r["trial_id"] for r in board["leaderboard"]] == expected
    assert [r["rank"] for r in board["leaderboard"]] == [1, 2, 3, 4]
    best = 0.5 if mode == "min" else 5.0
    assert board["leaderboard"][0]["value"] == best and board["best_value"] == best and board["best_trial_id"] == "b"
    # A worse later result leaves the trial's value at its best.
    store.record_result(engine, sid, "b", _row(3, 9.0 if mode == "min" else -9.0))
    assert store.sweep_leaderboard(engine, "s")["leaderboard"][0]["value"] == best


def test_sweeps_list_newest_first_and_replace(tmp_path, store_url):
    engine = store.open_store(store_url, tmp_path)
    old = _sweep(engine, "old")
    store.record_result(engine, old, "a", _row(1, 1.0))
    _sweep(engine, "new", mode="max")
    assert [w["name"] for w in store.list_sweeps(engine)] == ["new", "old"]
    with pytest.raises(store.StoreError, match="already holds a sweep named 'old'"):
        _sweep(engine, "old")
    _sweep(engine, "old", replace=True)
    assert [w["name"] for w in store.list_sweeps(engine)] == ["old", "new"]
    assert store.sweep_leaderboard(engine, "old")["leaderboard"] == []
    with engine.connect() as c:  # the replaced sweep's trials and results went with it
        assert c.exec_driver_sql("SELECT count(*) FROM results").scalar() == 0


def test_schedules_table(tmp_path, store_url):
    engine = store.open_store(store_url, tmp_path)
    with Session(engine) as s:
        s.add(store.Schedule(name="nightly", spec_path="jobs/quickstart.yaml", cron="0 3 * * *",
                             overrides=["train.max_steps=100"]))
        s.commit()
        got = s.query(store.Schedule).one()
        assert (got.enabled, got.last_fired, got.overrides, got.address) == (True, None, ["train.max_steps=100"], None)


def test_jsonable():
    assert store.jsonable({"a": np.float32(0.5), "b": [np.int64(3), math.inf], 1: (None, True), "p": Path("/x")}) == {
        "a": 0.5, "b": [3, None], "1": [None, True], "p": "/x"}


# ---- the driver's callback --------------------------------------------------------------------------------------


def _trial(trial_id: str, lr: float, **kw: Any) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"train": {"lr": lr, "batch_size": 4}, "run": {}},
                           last_result={}, get_error=lambda: "Traceback...\n\nValueError: loss is not finite\n", **kw)


def test_store_callback_records_a_trial(tmp_path, store_url):
    from tuner.sweep.callbacks.store import StoreCallback

    engine = store.open_store(store_url, tmp_path)
    sid = _sweep(engine)
    cb = StoreCallback(engine, sid, ["train.lr"], nested=True, time_attr="tokens", max_t=200)
    a, b = _trial("a", 1e-3), _trial("b", 1e-2)
    for t in (a, b):
        cb.on_trial_start(iteration=0, trials=[], trial=t)
    for i, loss in [(1, 3.0), (2, 2.0), (3, 2.5)]:
        result = {**_row(i, loss), "config": a.config, "experiment_tag": "x", "should_checkpoint": True}
        cb.on_trial_result(iteration=i, trials=[], trial=a, result=result)
        cb.on_checkpoint(iteration=i, trials=[], trial=a, checkpoint=SimpleNamespace(path=f"/ckpt/{i}"))
    a.last_result = _row(3, 2.5)  # 300 tokens >= max_t
    cb.on_trial_complete(iteration=4, trials=[], trial=a)
    cb.on_trial_result(iteration=5, trials=[], trial=b, result=_row(1, 4.0))
    cb.on_trial_error(iteration=6, trials=[], trial=b)

    board = store.sweep_leaderboard(engine, "s")
    ra, rb = board["leaderboard"]
    assert (ra["trial_id"], ra["state"], ra["value"], ra["config"]) == ("a", "completed", 2.0, {"train.lr": 1e-3})
    assert ra["checkpoint"] == "/ckpt/2"  # the checkpoint of its best result, not its latest
    assert (rb["state"], rb["error"]) == ("error", "ValueError: loss is not finite")
    assert store.trial_results(engine, "s", "a")[0] == _row(1, 3.0)  # Ray's bookkeeping left out

    stopped = _trial("c", 5e-3)
    cb.on_trial_result(iteration=7, trials=[], trial=stopped, result=_row(1, 1.3, done=True))  # Tune's stop
    stopped.last_result = _row(1, 1.3, done=True)  # 100 tokens < max_t: stopped early by the scheduler
    cb.on_trial_complete(iteration=8, trials=[], trial=stopped)
    board = store.sweep_leaderboard(engine, "s")
    assert {r["trial_id"]: r["state"] for r in board["leaderboard"]} == {"a": "completed", "b": "error", "c": "stopped"}
    assert (board["best_trial_id"], board["best_value"]) == ("a", 2.0)  # a value cut short never beats a full one

    own = _trial("d", 2e-3)  # an objective that ends on its own before max_t: its last result is not marked done
    cb.on_trial_result(iteration=9, trials=[], trial=own, result=_row(1, 1.5))
    own.last_result = _row(1, 1.5, done=True)  # Ray marks every ended trial's last result done
    cb.on_trial_complete(iteration=10, trials=[], trial=own)
    board = store.sweep_leaderboard(engine, "s")
    assert {r["trial_id"]: r["state"] for r in board["leaderboard"]}["d"] == "completed"
    assert (board["best_trial_id"], board["best_value"]) == ("d", 1.5)


def test_store_callback_pickles_without_engine_or_password(tmp_path):
    from tuner.sweep.callbacks.store import StoreCallback

    engine = store.open_store(None, tmp_path)
    cb = StoreCallback(engine, _sweep(engine), ["lr"], nested=False)
    again = pickle.loads(pickle.dumps(cb))
    assert again._engine is None and again.url == cb.url
    again.on_trial_result(iteration=1, trials=[], trial=SimpleNamespace(trial_id="a", config={"lr": 0.1}),
                          result=_row(1, 1.0))
    assert store.sweep_leaderboard(engine, "s")["leaderboard"][0]["config"] == {"lr": 0.1}
    cb.url = "postgresql://u:secret@h:5433/db?sslmode=require"
    assert pickle.loads(pickle.dumps(cb)).url == "postgresql://u@h:5433/db?sslmode=require"


def test_store_callback_never_stops_the_sweep(tmp_path, caplog):
    from tuner.sweep.callbacks.store import StoreCallback

    engine = store.open_store(None, tmp_path)
    cb = StoreCallback(engine, 999, ["lr"], nested=False)  # no such sweep
    cb.on_trial_result(iteration=1, trials=[], trial=SimpleNamespace(trial_id="a", config={}), result=_row(1, 1.0))
    assert "on_trial_result failed" in caplog.text


# ---- the driver's clash check, and the commands ----------------------------------------------------------------


def test_a_sweep_of_the_same_name_elsewhere_is_refused(tmp_path, tiny_raw):
    from tuner.sweep.records import open_sweep_store

    spec = validate(tiny_raw(name="clash", storage=str(tmp_path)))
    engine = store.open_store(None, tmp_path)
    store.start_sweep(engine, "clash", spec={}, storage="/elsewhere/clash", metric="val_loss", mode="min")
    with pytest.raises(SpecError) as e:
        open_sweep_store(spec, None, overwrite=False)
    assert e.value.problems[0][0] == "name" and "/elsewhere/clash" in e.value.problems[0][1]
    assert open_sweep_store(spec, None, overwrite=True)[1] is True
    store.start_sweep(engine, "clash", spec={}, storage=str(spec.sweep_dir), metric="val_loss", mode="min",
                      replace=True)
    assert open_sweep_store(spec, None, overwrite=False)[1] is True  # this directory's own, stale record
    spec2 = validate(tiny_raw(name="fresh", storage=str(tmp_path)))
    assert open_sweep_store(spec2, None, overwrite=False)[1] is False


def test_sweeps_commands(tmp_path):
    from tuner.cli import app

    engine = store.open_store(None, tmp_path)
    sid = _sweep(engine, "demo")
    store.record_trial(engine, sid, "t1", config={"train.lr": 0.001})
    store.record_result(engine, sid, "t1", _row(2, 2.25))
    store.record_result(engine, sid, "t2", _row(1, 3.5))
    runner = CliRunner()

    r = runner.invoke(app, ["sweeps", "list", "--storage", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "demo" in r.output and "running" in r.output and "2.25" in r.output and "300" in r.output

    r = runner.invoke(app, ["sweeps", "show", "demo", "--store", f"sqlite:///{tmp_path / 'tuner.db'}"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    first = next(ln for ln in lines if " t1 " in ln)
    assert "2.25" in first and "0.001" in first
    assert lines.index(first) < next(i for i, ln in enumerate(lines) if " t2 " in ln)
    assert "compute: 4 trial-seconds, 3 iterations, 300 tokens over 2 trials" in r.output

    r = runner.invoke(app, ["sweeps", "show", "nope", "--storage", str(tmp_path)])
    assert r.exit_code == 2 and "no sweep named 'nope'" in r.output
    r = runner.invoke(app, ["sweeps", "show", "demo", "--storage", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no sweep named 'demo'" in r.output and "no sweep store" in r.output
    r = runner.invoke(app, ["sweeps", "list", "--store", "nosuchdb://h/db"])
    assert r.exit_code == 2 and "knows no database" in r.output


def test_a_plain_postgresql_url_uses_psycopg_3(postgres):
    url = postgres.database().replace("postgresql+psycopg://", "postgresql://")
    engine = store.open_store(url, ".")
    assert engine.url.drivername == "postgresql+psycopg" and store.list_sweeps(engine) == []
    engine.dispose()


def test_an_unreachable_server_is_a_one_line_store_error(postgres):
    from support import free_port

    with pytest.raises(store.StoreError, match=r"cannot be opened: connection failed") as e:
        store.open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/none", ".")
    assert "\n" not in str(e.value)


def test_a_store_from_before_migrations_is_brought_up_to_date(store_url, tmp_path):
    """The tables as tuner made them before migrations (schedules without warm_start, no exploits): opening the
    store stamps its baseline and applies the migrations; a second open does nothing."""
    from sqlalchemy import create_engine, inspect, text

    old = create_engine(store_url)
    with old.begin() as c:
        c.execute(text("CREATE TABLE schedules (id INTEGER PRIMARY KEY, name VARCHAR(255) UNIQUE, spec_path TEXT, "
                       "cron VARCHAR(255), address TEXT, overrides JSON, last_fired TIMESTAMP, enabled BOOLEAN, "
                       "created_at TIMESTAMP)"))
        c.execute(text("INSERT INTO schedules (id, name, spec_path, cron, overrides, enabled) "
                       "VALUES (1, 'n', '/s.yaml', '0 2 * * *', '[]', TRUE)"))
    old.dispose()
    engine = store.open_store(store_url, tmp_path, upgrade=False)
    assert store.migrate(engine) == (None, "0003")
    assert store.migrate(engine) == ("0003", "0003")
    assert "warm_start" in {c["name"] for c in inspect(engine).get_columns("schedules")}
    assert {"sweeps", "trials", "results", "exploits", "schedule_runs"} <= set(inspect(engine).get_table_names())
    assert store.list_schedules(engine)[0]["warm_start"] == 3
    engine.dispose()
