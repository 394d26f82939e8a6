#!/usr/bin/env bash
# Runs the designer under Xvfb through the whole loop (network, data, training, results) and
# writes screenshots/{graph,gallery,data,training,results}.png; then opens torchvision's GoogLeNet
# (exported here with random weights: the layout, not the weights, is the point) and writes
# screenshots/graph_googlenet.png with its first inception block opened in place; then
# screenshots/compare.png (three torchvision networks compared on the sample data); then
# screenshots/{data_boxes,training_detect,results_detect}.png (a detector); then
# screenshots/data_sounds.png (a folder of sound clips); then screenshots/data_browse.png (the
# image browser on 50,000 images). Needs
# Debian's xvfb and mesa-vulkan-drivers (software Vulkan for the wgpu renderer), for
# GoogLeNet tools/pyenv.sh's torchvision, and for the detection and sound datasets Debian's
# python3-skimage and python3-soundfile (tools/pyenv.sh sees the system's packages).
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
import inspect, sys, torch, torchvision
# PyTorch 2.9 and later export through dynamo by default, which needs onnxscript (as in
# tools/bench_inference.py): the TorchScript exporter where there is the choice.
legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
m = torchvision.models.googlenet(aux_logits=False, init_weights=True).eval()
torch.onnx.export(m, torch.zeros(1, 3, 224, 224), sys.argv[1], opset_version=13,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **legacy)
PY
fi
xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --model "$googlenet" --screenshots "$out"
# The comparison window: three torchvision networks (random weights) as a gallery of their
# own, served from a folder mirror, compared on the sample data.
cmp="$root/target/screenshots/compare"
mkdir -p "$cmp"
"$root/tools/pyenv.sh" python - "$cmp" <<'PY'
import hashlib, inspect, os, sys, torch, torchvision
out = sys.argv[1]
legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
nets = {"resnet18": ("ResNet-18", "ResNet", torchvision.models.resnet18),
        "mobilenetv2": ("MobileNet-v2", "MobileNet", torchvision.models.mobilenet_v2),
        "shufflenetv2": ("ShuffleNet-v2", "ShuffleNet", torchvision.models.shufflenet_v2_x1_0)}
entries = []
for name, (title, family, make) in nets.items():
    path = os.path.join(out, f"{name}.onnx")
    if not os.path.exists(path):
        torch.onnx.export(make().eval(), torch.zeros(1, 3, 224, 224), path, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **legacy)
    data = open(path, "rb").read()
    entries.append(f'(name: "{name}", title: "{title}", family: "{family}", file: "{name}.onnx", '
                   f'urls: [], sha256: "{hashlib.sha256(data).hexdigest()}", bytes: {len(data)}, '
                   f'opset: 13, licence: "BSD-3-Clause", source: "torchvision, random weights", '
                   f'layout: NCHW, input: (3, 224, 224), preprocess: None, labels: "", '
                   f'top1: None, note: "")')
open(os.path.join(out, "gallery.ron"), "w").write("(entries: [" + ",\n".join(entries) + "])")
PY
GRAFT_SHOT=compare GRAFT_GALLERY="$cmp/gallery.ron" GRAFT_MODEL_MIRROR="$cmp" \
  GRAFT_CACHE_DIR="$cmp/cache" \
  xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --screenshots "$out"
# Detection: scikit-image's photos composited into a box dataset
# (tools/make_detection_dataset.py), a detection head, a short run, results, boxes found.
boxes="$root/target/screenshots/boxes"
[ -f "$boxes/yolo/data.yaml" ] || "$root/tools/pyenv.sh" python "$root/tools/make_detection_dataset.py" "$boxes" --train 160 --val 40
GRAFT_SHOT=detect GRAFT_SHOT_DATA="$boxes/yolo" \
  xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --screenshots "$out"
# Sound: synthesised clips in mixed formats (tools/make_sound_dataset.py) in the data panel.
sounds="$root/target/screenshots/sounds"
[ -d "$sounds/tone" ] || "$root/tools/pyenv.sh" python "$root/tools/make_sound_dataset.py" "$sounds" --per-class 40
GRAFT_SHOT=sound GRAFT_SHOT_DATA="$sounds" \
  xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --screenshots "$out"
# 50,000 images (tools/make_large_dataset.py): the Data tab's image browser, scrolled.
large="$root/target/large_data"
[ -d "$large/bag" ] || /usr/bin/python3 "$root/tools/make_large_dataset.py" "$large"
GRAFT_SHOT=large GRAFT_SHOT_DATA="$large" \
  xvfb-run -a -s "-screen 0 1440x900x24" "$root/target/release/graft" --fresh --screenshots "$out"
ls -la "$out"
