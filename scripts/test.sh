#!/usr/bin/env bash
# Every test tier, as `make test` runs it, in two streams for the first minutes: the unit, contract and deploy tiers
# (CPU-bound, ~2.5 min), then the rehearsed GPU pool, beside the integration tests that mostly wait (on a `ray start`
# head, a bucket outage, the CLI's subprocesses); then the rest of the integration tier alone, on one shared local
# Ray. Measured on 2 cores: 313 s for the unit tiers and the waiting tests together instead of ~410 s one after the
# other. Fails if any part fails or collects no test (pytest exits 5).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PYTEST=("$PY" -m pytest -q -m "slow or not slow" --durations=20)
WAITING=(tests/integration/on_head tests/integration/test_bucket_storage.py tests/integration/test_cli.py)
AFTER_UNIT=(tests/integration/test_rehearsal.py)  # starts its own cluster: no Ray of this session's

beside=$(mktemp)
trap 'rm -f "$beside"' EXIT
(
  "${PYTEST[@]}" -p no:cacheprovider tests --ignore tests/integration; unit=$?
  "${PYTEST[@]}" -p no:cacheprovider "${AFTER_UNIT[@]}"; after=$?
  exit $(( unit != 0 ? unit : after ))
) >"$beside" 2>&1 &
fast=$!
"${PYTEST[@]}" "${WAITING[@]}"
waiting=$?
wait "$fast"
fast=$?
echo "=== every tier but tests/integration, then ${AFTER_UNIT[*]} (ran beside the above) ==="
cat "$beside"
ignore=()
for path in "${WAITING[@]}" "${AFTER_UNIT[@]}"; do ignore+=(--ignore "$path"); done
"${PYTEST[@]}" tests/integration "${ignore[@]}"
rest=$?
echo "exit codes: the other tiers $fast, waiting integration $waiting, other integration $rest"
[ "$fast" -eq 0 ] && [ "$waiting" -eq 0 ] && [ "$rest" -eq 0 ]
