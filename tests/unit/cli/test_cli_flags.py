"""CLI checks that need no Ray: tuner resume's errored-trial flags (one at most, checked before anything starts), tuner
store upgrade."""

from __future__ import annotations

import subprocess
import sys


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
