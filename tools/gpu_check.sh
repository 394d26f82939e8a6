#!/usr/bin/env bash
# The GPU question in one run: on a lent GPU machine, does Graft's wgpu path give the CPU's
# answers, and how fast does it train against PyTorch CUDA on the same machine?
#
# Here (crates.io, 2 cores), once:   tools/gpu_check.sh --build
#   builds `graft` without the window (cargo feature `window` off), strips it and writes
#   target/gpu/graft.xz (~40 MB, under the device's 64 MiB carry limit).
# There (no crates.io; PyTorch with CUDA):
#   run(command="tools/gpu_check.sh", carry=["target/gpu"])
#   writes $OUT/gpu_check.json (and the logs) with:
#   - parity: every tests/fixtures/* network, `graft infer --device wgpu` against the
#     committed reference output (max |diff| / max(1, max |ref|)), and the same on the CPU;
#   - training: EfficientNet-Lite0 (embedded) and MobileNet-v2 (torchvision, random weights,
#     exported there) at batch 32 and 128, full fine-tuning and frozen backbone, images/s
#     from Graft's report, on wgpu;
#   - the peer: PyTorch CUDA, the same networks, batches and modes, median step images/s.
# Dry run without a GPU (parity only, two fixtures; wgpu is then Mesa's lavapipe):
#   GPU_CHECK_FIXTURES='tests/fixtures/alexnet_op14/' GPU_CHECK_SKIP_TRAINING=1 tools/gpu_check.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${1:-}" = "--build" ]; then
  set -e
  cargo build --release --no-default-features --bin graft
  mkdir -p target/gpu
  cp target/release/graft target/gpu/graft
  strip target/gpu/graft
  xz -9 -T2 -f target/gpu/graft
  ls -la target/gpu
  exit 0
fi
out="${OUT:-$root/target/gpu_out}"
mkdir -p "$out"
work=$(mktemp -d)
bin="$work/graft"
if [ -f target/gpu/graft.xz ]; then
  xz -dc target/gpu/graft.xz > "$bin"
elif [ -x target/release/graft ]; then
  cp target/release/graft "$bin"
else
  echo "no graft binary: run tools/gpu_check.sh --build first" >&2
  exit 1
fi
chmod +x "$bin"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
"$bin" --version > "$out/graft_version.txt" 2>&1

"${PYTHON:-python3}" - "$bin" "$work" "$out" <<'PY'
import glob, json, os, statistics, subprocess, sys, time
import numpy as np

graft, work, out = sys.argv[1:4]
result = {"gpu": open(os.path.join(out, "gpu.txt")).read().strip()}

def run(args, log):
    t = time.perf_counter()
    p = subprocess.run([graft] + args, capture_output=True, text=True)
    with open(os.path.join(out, log), "a") as f:
        f.write(" ".join(args) + "\n" + p.stdout + p.stderr + "\n")
    return p.returncode == 0, time.perf_counter() - t, p.stderr.strip().splitlines()[-1:]

def read_npy(path):
    return np.load(path).astype(np.float32)

# 1. Parity on every fixture, wgpu and CPU.
parity = {}
for d in sorted(glob.glob(os.environ.get("GPU_CHECK_FIXTURES", "tests/fixtures/*/"))):
    name = os.path.basename(d.rstrip("/"))
    model = os.path.join(d, "model.onnx")
    if not os.path.exists(model):
        model = "default"
    if not os.path.exists(os.path.join(d, "output.npy")):
        continue
    want = read_npy(os.path.join(d, "output.npy"))
    row = {}
    for device in ("wgpu", "cpu"):
        o = os.path.join(work, f"{name}_{device}.npy")
        ok, secs, err = run(["infer", model, "--input", os.path.join(d, "input.npy"),
                             "--output", o, "--device", device], "parity.log")
        if ok:
            got = read_npy(o)
            scale = max(1.0, float(np.abs(want).max()))
            row[device] = float(np.abs(got.reshape(want.shape) - want).max() / scale)
        else:
            row[device] = f"failed: {err}"
    parity[name] = row
result["parity"] = parity
result["parity_wgpu_max_rel_error"] = max(
    (r["wgpu"] for r in parity.values() if isinstance(r.get("wgpu"), float)), default=None)

# 2. A dataset: 4 classes x 128 noisy images, 224 px (the speed does not depend on content).
# GPU_CHECK_SKIP_TRAINING=1 stops after parity (a dry run on a machine without a GPU).
if os.environ.get("GPU_CHECK_SKIP_TRAINING"):
    json.dump(result, open(os.path.join(out, "gpu_check.json"), "w"), indent=1)
    print(json.dumps(result, indent=1))
    sys.exit(0)
try:
    from PIL import Image
    data = os.path.join(work, "data")
    rng = np.random.default_rng(0)
    for c in range(4):
        os.makedirs(os.path.join(data, f"c{c}"), exist_ok=True)
        base = rng.integers(0, 255, 3)
        for i in range(128):
            px = np.clip(base + rng.normal(0, 40, (224, 224, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(os.path.join(data, f"c{c}", f"{i}.png"))
except ImportError as e:
    data = None
    result["training_error"] = f"no PIL to write the dataset: {e}"

# MobileNet-v2 for both sides.
torch_ok = True
try:
    import torch, torchvision
    result["torch"] = torch.__version__
    result["cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
    mnv2 = os.path.join(work, "mobilenet_v2.onnx")
    torch.onnx.export(torchvision.models.mobilenet_v2().eval(), torch.zeros(1, 3, 224, 224), mnv2,
                      opset_version=13, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
except Exception as e:
    torch_ok = False
    mnv2 = None
    result["torch_error"] = repr(e)

# 3. Graft on wgpu: images/s from the training report (2 epochs over 512 images).
training = {}
if data:
    for net, model in (("lite0", "default"), ("mobilenet_v2", mnv2)):
        if model is None:
            continue
        for batch in (32, 128):
            for mode in ("finetune", "frozen"):
                report = os.path.join(work, f"{net}_{batch}_{mode}.json")
                args = ["train", "--model", model, "--data", data, "--epochs", "2",
                        "--batch", str(batch), "--device", "wgpu", "--val-split", "0",
                        "--export", os.path.join(work, f"{net}.onnx"), "--report", report]
                if mode == "frozen":
                    args.append("--freeze-backbone")
                ok, secs, err = run(args, "train.log")
                key = f"{net} b{batch} {mode}"
                if ok:
                    r = json.load(open(report))
                    training[key] = {"graft_images_per_s": r["images_per_sec"], "wall_s": secs,
                                     "cached_frozen_layers": r["cached_frozen_layers"]}
                else:
                    training[key] = {"graft_error": err}
result["training"] = training

# 4. PyTorch CUDA, same networks, batches and modes: median of 10 steps after 3 warm-ups.
if torch_ok and torch.cuda.is_available():
    sys.path.insert(0, "tools")
    from efficientnet_lite0 import EfficientNetLite0
    dev = torch.device("cuda")
    def torch_speed(make, batch, mode):
        """Fine-tuning: every layer trains. Frozen: only the last Linear trains, the rest in
        inference mode without gradients (the naive loop: no feature cache)."""
        m = make().to(dev).train()
        head = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
        if mode == "frozen":
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            for p in head.parameters():
                p.requires_grad_(True)
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        x = torch.randn(batch, 3, 224, 224, device=dev)
        y = torch.randint(0, 4, (batch,), device=dev)
        loss_fn = torch.nn.CrossEntropyLoss()
        times = []
        for i in range(13):
            torch.cuda.synchronize()
            t = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(m(x)[:, :4], y)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t)
        return batch / statistics.median(times)
    for net, make in (("lite0", EfficientNetLite0), ("mobilenet_v2", torchvision.models.mobilenet_v2)):
        for batch in (32, 128):
            for mode in ("finetune", "frozen"):
                key = f"{net} b{batch} {mode}"
                try:
                    s = torch_speed(make, batch, mode)
                    training.setdefault(key, {})["torch_cuda_images_per_s"] = s
                    g = training[key].get("graft_images_per_s")
                    if g:
                        training[key]["ratio_graft_over_torch"] = g / s
                except Exception as e:
                    training.setdefault(key, {})["torch_error"] = repr(e)

json.dump(result, open(os.path.join(out, "gpu_check.json"), "w"), indent=1)
print(json.dumps(result, indent=1))
PY
