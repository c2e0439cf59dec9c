"""Find flaky tests before CI does: run a test tier N times in a row and list every test that did not pass every time.

    .venv/bin/python tests/repeat.py --runs 3 tests/integration        # what `make test-repeat N=3` runs
    .venv/bin/python tests/repeat.py --runs 10 tests/integration/on_head/test_resume.py

Each run is a fresh pytest process over every tier (`-m "slow or not slow"`) with its own JUnit XML report; the
table at the end gives each test that failed, errored or was skipped in some run, with its outcome per run and the
first line of its first failure. Exit 0 when every test passed in every run, 1 otherwise (a run that collected no
test counts as a failed run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """test id -> (passed | failed | error | skipped, first line of the message)."""
    out: dict[str, tuple[str, str]] = {}
    if not report.is_file():
        return out
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (child.get("message") or child.text or "").strip().splitlines()[:1]
                message = message[0][:160] if message else ""
                break
        # A test can pass and then error in its teardown: the worst outcome stands.
        if out.get(test_id, ("passed", ""))[0] == "passed":
            out[test_id] = (outcome, message)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", "-n", type=int, default=3)
    p.add_argument("paths", nargs="*", default=["tests/integration"], help="test files or directories")
    p.add_argument("--pytest-args", default="", help="more pytest arguments, e.g. '-k resume'")
    args = p.parse_args(argv)

    runs: list[dict[str, tuple[str, str]]] = []
    times: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="tuner-repeat-") as d:
        for i in range(args.runs):
            report = Path(d) / f"run-{i}.xml"
            cmd = [sys.executable, "-m", "pytest", "-q", "-m", "slow or not slow", "-p", "no:cacheprovider",
                   f"--junitxml={report}", *args.pytest_args.split(), *args.paths]
            started = time.monotonic()
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            times.append((time.monotonic() - started, rc))
            runs.append(outcomes(report))
            print(f"run {i + 1}/{args.runs}: exit {rc} in {times[-1][0]:.0f} s", flush=True)

    every = sorted({t for r in runs for t in r})
    unsteady = [t for t in every if any(r.get(t, ("missing", ""))[0] != "passed" for r in runs)]
    print(f"\n{len(every)} tests, {args.runs} runs: " + ", ".join(
        f"run {i + 1} {s:.0f} s (exit {rc})" for i, (s, rc) in enumerate(times)))
    empty = [i + 1 for i, r in enumerate(runs) if not r]
    if empty:
        print(f"runs that collected no test: {empty}")
    if not unsteady:
        if empty:
            return 1
        print("every test passed in every run")
        return 0 if all(rc == 0 for _, rc in times) else 1
    print(f"{len(unsteady)} test(s) did not pass every time:")
    for t in unsteady:
        seen = [r.get(t, ("missing", "")) for r in runs]
        first = next((m for o, m in seen if o != "passed" and m), "")
        print(f"  {t}\n    {' '.join(o for o, _ in seen)}" + (f"\n    {first}" if first else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
