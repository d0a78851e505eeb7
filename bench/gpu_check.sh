#!/usr/bin/env bash
# One GPU check (bench/gpu_check.py): builds the CUDA kernel, checks it against the reference on ragged
# batches, times torch-CUDA pruned vs dense on the demo models (runs/demo) at batch 1 and 32, builds a
# TensorRT engine where TensorRT imports, and writes one JSON (default runs/gpu_check/gpu_check.json).
# Stops after 10 minutes (GPU_CHECK_TIMEOUT seconds); the JSON keeps the steps finished by then.
#   bench/gpu_check.sh [--out FILE] [--demo-dir DIR] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT:-600}" "$PY" -m adapler.bench.gpu_check "$@"
