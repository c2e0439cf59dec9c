#!/usr/bin/env bash
# What the tests need that is not a Python package, installed when absent (Debian): chromium for the dashboard's
# browser test, PostgreSQL for the store tests (they start a throwaway server as the postgres user). `make test` runs this first, so a fresh machine (CI included) needs no other set-up step.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: ${missing[*]} missing and no apt-get here: install them, or the tests that need them skip" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
