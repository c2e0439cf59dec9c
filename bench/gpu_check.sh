#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA GPU and this project installed (about 8 minutes on one H100/H200):
# 1. tokens/s of the trial loop against a plain PyTorch loop at hidden 256 x 4 layers (bench/throughput.py), plain and
#    with train.compile, then one profile of each loop (to see why the trial's steps differ, if they do) and a count
#    of the trial's host syncs;
# 2. a small bf16 sweep of a GPT-2-small-shaped model with train.compile through tuner (Ray Tune + ASHA,
#    jobs/gpu_check.yaml), then tokens/s and MFU per trial (bench/mfu.py).
# Extra arguments go to `tuner run` (e.g. --set search.num_trials=2).
#
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA GPU visible here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
model=(--steps 100 --batch 32 --layers 4 --hidden 256 --seq-len 256)
"$PY" bench/throughput.py "${model[@]}"
"$PY" bench/throughput.py "${model[@]}" --compile
"$PY" bench/throughput.py "${model[@]}" --repeats 1 --steps 30 --profile --sync-check
out=${GPU_CHECK_DIR:-$(mktemp -d -t tuner-gpu-check-XXXX)}
start=$(date +%s)
"$PY" -m tuner run jobs/gpu_check.yaml --set storage="$out" "$@"
echo "sweep wall: $(( $(date +%s) - start )) s"
"$PY" bench/mfu.py jobs/gpu_check.yaml "$out/gpu-check"
