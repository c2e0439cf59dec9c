#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU and this project installed (<= 5 minutes on one H100/H200):
# a small bf16 sweep of a GPT-2-small-shaped model through tuner (Ray Tune + ASHA, jobs/gpu_check.yaml), then
# tokens/s and MFU per trial (bench/mfu.py). Extra arguments go to `tuner run` (e.g. --set search.num_trials=2).
#
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU visible here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
out=${GPU_CHECK_DIR:-$(mktemp -d -t tuner-gpu-check-XXXX)}
start=$(date +%s)
"$PY" -m tuner run jobs/gpu_check.yaml --set storage="$out" "$@"
echo "sweep wall: $(( $(date +%s) - start )) s"
"$PY" bench/mfu.py jobs/gpu_check.yaml "$out/gpu-check"
