"""CLI checks that need no Ray: tuner resume's errored-trial flags (one at most, checked before anything starts), tuner
store upgrade, what tuner validate says of a finite space."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]


def test_retry_and_restart_exclude_each_other(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tuner", "resume", str(tmp_path), "--retry-errored",
                        "--restart-errored"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "exclude each other" in r.stderr and "Traceback" not in r.stderr


def test_store_upgrade_says_from_which_revision_to_which(tmp_path):
    def upgrade() -> str:
        r = subprocess.run([sys.executable, "-m", "tuner", "store", "upgrade", "--storage", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "upgraded from a new or pre-migration store to revision" in upgrade()
    assert "already at revision" in upgrade()


def test_validate_says_the_default_searcher_runs_each_config_of_a_finite_space_once(tmp_path):
    spec = yaml.safe_load((REPO / "jobs" / "quickstart.yaml").read_text())
    spec["search"].update(num_trials=20, space={"train.lr": {"choice": [1.0e-3, 3.0e-3]},
                                                "model.num_layers": {"choice": [1, 2, 4]}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    r = subprocess.run([sys.executable, "-m", "tuner", "validate", str(tmp_path / "spec.yaml")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "quickstart: 6 trials (every config of the space; 20 asked)" in r.stdout
