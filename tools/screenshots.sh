#!/usr/bin/env bash
# Runs the designer under Xvfb through the whole loop (network, data, training, results) and
# writes screenshots/{graph,data,training,results}.png; then opens torchvision's GoogLeNet
# (exported here with random weights: the layout, not the weights, is the point) and writes
# screenshots/graph_googlenet.png with its first inception block opened in place. Needs
# Debian's xvfb and mesa-vulkan-drivers (software Vulkan for the wgpu renderer) and, for
# GoogLeNet, tools/pyenv.sh's torchvision.
#   cargo build --release && tools/screenshots.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="${1:-$root/screenshots}"
mkdir -p "$out"
export XDG_CONFIG_HOME="$(mktemp -d)"   # a fresh start: no remembered project
xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --screenshots "$out"
googlenet="$root/target/screenshots/googlenet.onnx"
if [ ! -f "$googlenet" ]; then
  mkdir -p "$(dirname "$googlenet")"
  "$root/tools/pyenv.sh" python - "$googlenet" <<'PY'
import sys, torch, torchvision
m = torchvision.models.googlenet(aux_logits=False, init_weights=True).eval()
torch.onnx.export(m, torch.zeros(1, 3, 224, 224), sys.argv[1], opset_version=13,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
PY
fi
xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --model "$googlenet" --screenshots "$out"
ls -la "$out"
