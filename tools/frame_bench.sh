#!/usr/bin/env bash
# UI frame times while training, with a 300+ node network on screen (docs/BENCHMARKS.md).
# Exports DenseNet-121 (torchvision, BatchNorm kept: 435 nodes after import), opens it in the
# window under Xvfb with the sample data, fine-tunes every layer on the CPU, and measures the UI
# thread's time per frame on the Network tab: every block open and fitted, every block open and
# zoomed in, then the default view (src/app/screenshots.rs, FrameBench).
#   cargo build --release && tools/frame_bench.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/frame_bench"
mkdir -p "$work"
if [ ! -f "$work/densenet121.onnx" ]; then
  "$root/tools/pyenv.sh" python - "$work/densenet121.onnx" <<'PY'
import sys, torch, torchvision
m = torchvision.models.densenet121().eval()
torch.onnx.export(m, torch.zeros(1, 3, 224, 224), sys.argv[1], opset_version=13, input_names=["input"],
                  output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                  training=torch.onnx.TrainingMode.PRESERVE)
PY
fi
export XDG_CONFIG_HOME="$(mktemp -d)"
xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --model "$work/densenet121.onnx" --frame-bench "$work/frames.json"
cat "$work/frames.json"
