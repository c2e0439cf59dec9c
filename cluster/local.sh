#!/usr/bin/env bash
# A head and N worker nodes on this machine, each its own `ray start` on 127.0.0.1 (token auth on):
#   cluster/local.sh up [--workers N] [--gpus-per-worker G] [--cpus-per-worker C] [--head-cpus H]
#   cluster/local.sh status
#   cluster/local.sh down        # stops only what `up` started
# The same as `tuner cluster ...`; PYTHON picks the interpreter (default: the project's .venv, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
exec "$python" -m tuner cluster "$@"
