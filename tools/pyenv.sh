#!/usr/bin/env bash
# Run a command in Graft's Python tool environment: Debian's python3-torch/torchvision/onnx
# (system site packages) plus ONNX Runtime from PyPI, in a venv under target/ (ignored by git).
# Usage: tools/pyenv.sh python tools/make_fixtures.py
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${GRAFT_PYENV:-$root/target/pyenv}
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  # numpy < 2: Debian's torch is built against NumPy 1 (`torch.from_numpy` fails under 2,
  # which onnxruntime would otherwise pull in).
  "$venv/bin/pip" install -q "onnxruntime==1.32.*" "numpy<2"
fi
exec "$venv/bin/$1" "${@:2}"
