"""The compute budget's ledger: accounting, limits, and a resumed sweep counting on."""

from __future__ import annotations

import pickle

import pytest

from tuner.schedulers.compute_budget import Ledger
from tuner.spec import SpecError, validate
from tuner.spec.schema import parse_duration


def row(i: int, seconds: float) -> dict:
    return {"training_iteration": i, "time_this_iter_s": seconds, "time_total_s": seconds * i}


def test_compute_is_resources_times_trained_time(tmp_path):
    ledger = Ledger(tmp_path / "budget.json", cpu_hours=1.0, cpus_per_trial=4, gpus_per_trial=2)
    ledger.charge("a", row(1, 900))
    ledger.charge("b", row(1, 450))
    ledger.charge("b", row(1, 450))  # Tune hands a completed trial's last result over again: counted once
    spent = ledger.spent()
    assert spent["cpu_hours"] == pytest.approx((900 + 450) * 4 / 3600)
    assert spent["gpu_hours"] == pytest.approx((900 + 450) * 2 / 3600)
    assert ledger.exhausted() == "cpu_hours"  # 1.5 CPU-hours of 1


def test_no_limit_is_never_spent_and_the_first_spent_limit_is_named(tmp_path):
    unlimited = Ledger(tmp_path / "a.json", cpus_per_trial=1)
    unlimited.charge("a", row(1, 1e6))
    assert unlimited.exhausted() is None
    ledger = Ledger(tmp_path / "b.json", gpu_hours=0.5, cpu_hours=10, cpus_per_trial=1, gpus_per_trial=1)
    ledger.charge("a", row(1, 1000))
    assert ledger.exhausted() is None
    ledger.charge("a", row(2, 1000))
    assert ledger.exhausted() == "gpu_hours"
    report = (tmp_path / "b.json").read_text()
    assert '"ended_by": "gpu_hours"' in report


def test_the_wall_clock_runs_while_a_driver_runs(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("tuner.schedulers.compute_budget.time.monotonic", lambda: now[0])
    ledger = Ledger(tmp_path / "budget.json", wall_clock_s=60)
    now[0] += 59
    assert ledger.exhausted() is None
    now[0] += 2
    assert ledger.exhausted() == "wall_clock_s"


def test_a_restored_ledger_counts_on_from_its_file(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("tuner.schedulers.compute_budget.time.monotonic", lambda: now[0])
    ledger = Ledger(tmp_path / "budget.json", cpu_hours=1.0, wall_clock_s=100, cpus_per_trial=2)
    ledger.charge("a", row(1, 600))
    now[0] = 30.0
    ledger.charge("a", row(2, 600))  # saved with 30 s of wall clock
    # The driver dies; the resumed sweep unpickles the scheduler's ledger (Tune saved it at the start).
    restored = pickle.loads(pickle.dumps(Ledger(tmp_path / "budget.json", cpu_hours=1.0, wall_clock_s=100,
                                                cpus_per_trial=2)))
    assert restored.trial_seconds == {"a": 1200.0}
    assert restored.spent()["wall_clock_s"] == pytest.approx(30.0)
    restored.charge("a", row(3, 600))
    assert restored.exhausted() == "cpu_hours"  # 1800 s x 2 CPUs = 1 CPU-hour


def test_budget_spec_reads_durations_and_refuses_bad_limits():
    assert [parse_duration(t) for t in ("2h", "90m", "1h30m", "45s", "120", "0.5h")] == [7200, 5400, 5400, 45, 120,
                                                                                       1800]
    space = {"search": {"space": {"train.lr": {"loguniform": [1e-4, 1e-2]}}}}
    spec = validate({"name": "b", "budget": {"wall_clock": "1h30m", "cpu_hours": 2}, **space})
    assert spec.budget.wall_clock == 5400 and spec.budget.cpu_hours == 2.0 and spec.budget.limited
    assert not validate({"name": "b", **space}).budget.limited
    with pytest.raises(SpecError) as e:
        validate({"name": "b", "budget": {"wall_clock": "2 days", "cpu_hours": -1, "gpu_hours": 1, "gpus": 3},
                  **space})
    keys = dict(e.value.problems)
    assert "duration" in keys["budget.wall_clock"]
    assert "greater than 0" in keys["budget.cpu_hours"]
    assert "unknown key" in keys["budget.gpus"]
    with pytest.raises(SpecError) as e:
        validate({"name": "b", "budget": {"gpu_hours": 1}, **space})
    assert "no GPU" in dict(e.value.problems)["budget.gpu_hours"]
