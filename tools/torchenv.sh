#!/usr/bin/env bash
# Run a command with the newest PyTorch from PyPI (2.15 as of 2026-12), for the benchmarks whose
# peer is PyTorch itself: the peer at its best is the release a user installs today, not only
# Debian's 1.13 that tools/pyenv.sh (and the tests) use. A venv under target/ (ignored by git);
# PyPI's Linux wheel brings CUDA's libraries too (5.4 GB), which is why the tests do not use it.
# Usage: MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
#            tools/torchenv.sh python tools/bench_train.py --repeats 3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${GRAFT_TORCHENV:-$root/target/torchenv}
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
# torchvision and ONNX Runtime for tools/bench_inference.py (PyTorch 2.15 as its PyTorch peer);
# checked apart from the venv so that a venv made before they were added gets them too.
if ! "$venv/bin/python" -c "import torch, torchvision, onnxruntime, onnx" 2>/dev/null; then
  "$venv/bin/pip" install -q "torch==2.15.*" "torchvision==0.29.*" "onnxruntime==1.32.*" onnx numpy pillow
fi
exec "$venv/bin/$1" "${@:2}"
