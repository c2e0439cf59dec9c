#!/usr/bin/env bash
# Every test tier, as `make test` runs it, in two streams on one machine, then a third alone:
# - beside: the unit, contract and deploy tiers (CPU-bound, ~4.5 min), then the integration modules whose sweeps assert
#   no timing (they finish on their own however slow the machine is);
# - waiting, at the same time: the integration tests that mostly wait (a killed and resumed driver on a `ray start`
#   head, the scheduler, a bucket outage, the CLI's subprocesses);
# - then the rest of the integration tier alone, on one shared local Ray: what asserts a time (workers freed within
#   10 s, the dashboard in a browser) or starts nodes of its own (the rehearsed GPU pool, multi-node clusters: beside
#   the others their nodes slowed both streams by half).
# Fails if any part fails or collects no test (pytest exits 5).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYTEST=("$PY" -m pytest -q -m "slow or not slow" --durations=20)
WAITING=(tests/integration/on_head/test_resume.py tests/integration/on_head/test_schedule.py
         tests/integration/test_bucket_storage.py tests/integration/test_cli.py)
UNTIMED=(tests/integration/test_search_depth.py tests/integration/test_sweeps.py tests/integration/test_extend.py
         tests/integration/test_tracking.py tests/integration/test_budget_stops_a_sweep.py
         tests/integration/test_checkpoint_gc_in_a_sweep.py tests/integration/test_resume_errored.py
         tests/integration/test_store_records_a_sweep.py tests/integration/test_objective_that_reports_once.py)

tiers=()  # every tier but the integration one
for dir in tests/*/; do [ "$dir" = tests/integration/ ] || tiers+=("$dir"); done

beside=$(mktemp)
set -m  # the background stream in its own process group, which Ctrl-C (or a stopped CI job) also interrupts
"${PYTEST[@]}" -p no:cacheprovider "${tiers[@]}" "${UNTIMED[@]}" >"$beside" 2>&1 &
beside_pid=$!
set +m
trap 'kill -INT -- -"$beside_pid" 2>/dev/null; wait "$beside_pid"; rm -f "$beside"; exit 130' INT TERM
trap 'rm -f "$beside"' EXIT
"${PYTEST[@]}" "${WAITING[@]}"
waiting=$?
wait "$beside_pid"
fast=$?
echo "=== the unit, contract and deploy tiers and the untimed integration modules (ran beside the above) ==="
cat "$beside"
ignore=()
for path in "${WAITING[@]}" "${UNTIMED[@]}"; do ignore+=(--ignore "$path"); done
"${PYTEST[@]}" tests/integration "${ignore[@]}"
rest=$?
echo "exit codes: the other tiers $fast, waiting integration $waiting, other integration $rest"
[ "$fast" -eq 0 ] && [ "$waiting" -eq 0 ] && [ "$rest" -eq 0 ]
