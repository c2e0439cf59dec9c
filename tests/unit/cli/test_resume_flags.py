"""tuner resume's errored-trial flags: one of them at most, checked before anything starts."""

from __future__ import annotations

import subprocess
import sys


def test_retry_and_restart_exclude_each_other(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tuner", "resume", str(tmp_path), "--retry-errored",
                        "--restart-errored"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "exclude each other" in r.stderr and "Traceback" not in r.stderr
