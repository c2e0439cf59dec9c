#!/usr/bin/env bash
# Every test tier, as `make test` runs it. The unit, contract and deploy tiers (CPU-bound, ~3 min) run beside the
# integration tests that mostly wait and assert no tight timing (a killed and resumed driver on a `ray start` head,
# the scheduler, a bucket outage, the CLI's subprocesses); then the rest
# of the integration tier runs alone, on one shared local Ray (the rehearsed GPU pool among them: beside the others
# its nodes slowed both streams by half). Measured on 2 cores: 313 s for the first pair side by side instead of
# ~410 s one after the other. Fails if any part fails or collects no test (pytest exits 5).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYTEST=("$PY" -m pytest -q -m "slow or not slow" --durations=20)
WAITING=(tests/integration/on_head/test_resume.py tests/integration/on_head/test_schedule.py
         tests/integration/test_bucket_storage.py tests/integration/test_cli.py)

beside=$(mktemp)
set -m  # the background stream in its own process group, which Ctrl-C (or a stopped CI job) also interrupts
"${PYTEST[@]}" -p no:cacheprovider tests --ignore tests/integration >"$beside" 2>&1 &
beside_pid=$!
set +m
trap 'kill -INT -- -"$beside_pid" 2>/dev/null; wait "$beside_pid"; rm -f "$beside"; exit 130' INT TERM
trap 'rm -f "$beside"' EXIT
"${PYTEST[@]}" "${WAITING[@]}"
waiting=$?
wait "$beside_pid"
fast=$?
echo "=== every tier but tests/integration (ran beside the above) ==="
cat "$beside"
ignore=()
for path in "${WAITING[@]}"; do ignore+=(--ignore "$path"); done
"${PYTEST[@]}" tests/integration "${ignore[@]}"
rest=$?
echo "exit codes: the other tiers $fast, waiting integration $waiting, other integration $rest"
[ "$fast" -eq 0 ] && [ "$waiting" -eq 0 ] && [ "$rest" -eq 0 ]
