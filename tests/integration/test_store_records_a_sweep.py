"""A real sweep writes the sweep store: every result row a trial reported, and what `tuner sweeps` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner.cli import app
from tuner.spec import validate
from tuner.store import list_sweeps, open_store, sweep_leaderboard, trial_results
from tuner.sweep.driver import run_sweep
from tuner.sweep.summary import RAY_BOOKKEEPING

pytestmark = pytest.mark.integration


def test_the_store_holds_every_reported_row(ray_local, tiny_raw):
    spec = validate(tiny_raw(search={"num_trials": 2}))
    summary = run_sweep(spec).summary
    engine = open_store(None, spec.sweep_dir.parent, create=False)

    board = sweep_leaderboard(engine, spec.name)
    assert board["status"] == "finished" and board["storage"] == str(spec.sweep_dir)
    assert board["best_trial_id"] == summary["best"]["trial_id"] and board["best_value"] == summary["best"]["value"]
    assert len(board["leaderboard"]) == 2 and board["leaderboard"][0]["trial_id"] == summary["best"]["trial_id"]
    assert board["compute"]["iterations"] == summary["compute"]["iterations"]
    assert board["compute"]["tokens"] == summary["compute"]["tokens"]
    assert board["compute"]["trial_seconds"] == pytest.approx(summary["compute"]["trial_seconds"], abs=1e-3)
    by_id = {r["trial_id"]: r for r in board["leaderboard"]}
    for t in summary["trials"]:
        lines = (Path(t["path"]) / "result.json").read_text().splitlines()
        rows = [{k: v for k, v in json.loads(ln).items() if k not in RAY_BOOKKEEPING} for ln in lines]
        assert len(rows) == t["iterations"] == 4  # 20 steps, evaluated every 5
        assert trial_results(engine, spec.name, t["trial_id"]) == rows
        stored = by_id[t["trial_id"]]
        assert stored["config"] == t["config"] and list(t["config"]) == ["train.lr"]
        assert (stored["state"], stored["value"], stored["iterations"]) == (t["state"], t["value"], t["iterations"])
        assert stored["checkpoint"] == t["checkpoint"]
    assert spec.name in [w["name"] for w in list_sweeps(engine)]
    engine.dispose()

    runner = CliRunner()
    listed = runner.invoke(app, ["sweeps", "list", "--storage", str(spec.sweep_dir.parent)])
    assert listed.exit_code == 0, listed.output
    row = next(ln for ln in listed.output.splitlines() if spec.name in ln)
    assert "finished" in row and f"{summary['best']['value']:.4g}" in row
    shown = runner.invoke(app, ["sweeps", "show", spec.name, "--storage", str(spec.sweep_dir.parent)])
    assert shown.exit_code == 0, shown.output
    assert all(t["trial_id"] in shown.output for t in summary["trials"])
    assert f"{summary['compute']['tokens']:,} tokens over 2 trials" in shown.output
    assert f"best: trial {summary['best']['trial_id']}" in shown.output
