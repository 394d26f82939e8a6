#!/usr/bin/env bash
# The GPU question in one run: on a lent GPU machine, does Graft's wgpu path give the CPU's
# answers, and how fast does it train against PyTorch CUDA on the same machine?
#
# Here (crates.io, 2 cores), after any change to src/:   tools/gpu_check.sh --build
#   builds `graft` without the window (cargo feature `window` off), strips it and writes
#   target/gpu/graft.xz (~37 MB).
# Just before each call, here:     tools/gpu_check.sh --slim   (after it: --unslim; see below)
# Once, here, the Vulkan loader packages the device notes name, into .gl/ (ignored):
#   echo /.gl/ >> .git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 \
#     libgl1 libglx0 libgles2)
# There (no crates.io; PyTorch with CUDA):
#   run(command="set -o pipefail; PYTHONUNBUFFERED=1 tools/gpu_check.sh 2>&1 | tee $OUT/log",
#       carry=["target/gpu", ".gl"], timeout_s=520)
#   (.gl is unpacked there when the Vulkan loader is missing; the check stops itself after
#   GPU_CHECK_DEADLINE_S, default 420 s, keeping what it measured)
#   writes $OUT/gpu_check.json (and the logs) with:
#   - parity: the tests/fixtures/* networks, the most used first, for GPU_CHECK_PARITY_S
#     (100 s: each wgpu process compiles its kernels, 6-44 s a network on an H200),
#     `graft infer --device wgpu` against the committed reference output
#     (max |diff| / max(1, max |ref|)), and the same on the CPU;
#   - training: EfficientNet-Lite0 (embedded) and MobileNet-v2 (torchvision, random weights,
#     exported there) at batch 32 and 128, full fine-tuning and frozen backbone, images/s
#     from Graft's report, on wgpu; Lite0's fine-tuning on the machine's CPU cores (Graft's
#     own kernels) for reference, and on wgpu with GRAFT_GPU_OPS=0 (burn's depthwise weight
#     gradient instead of Graft's, src/engine/gpu_train.rs) to see what that op gains;
#   - the peer: PyTorch CUDA, the same networks, batches and modes, median step images/s,
#     float32 at its best of NCHW and channels-last (cuDNN autotuner on), measured first.
# tools/gpu_profile.sh then says where the wgpu training time goes.
# Dry run without a GPU (parity only, two fixtures; wgpu is then Mesa's lavapipe):
#   GPU_CHECK_FIXTURES='tests/fixtures/alexnet_op14/' GPU_CHECK_SKIP_TRAINING=1 tools/gpu_check.sh
# and of the training steps' bookkeeping on the CPU: GPU_CHECK_TRAIN_DEVICE=cpu.
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
if [ "${1:-}" = "--slim" ]; then
  # What travels to the device is the whole working tree (tracked files: ~52 MB) plus what is
  # carried (graft.xz: ~37 MB), against a 64 MiB limit. Empty, in this checkout, the tracked
  # files the checks never read (the default network is inside the binary), listed in
  # target/gpu/slimmed.txt; `tools/gpu_check.sh --unslim` after the call puts them back.
  # Refused where one of them has changes of its own, which emptying would lose.
  mkdir -p target/gpu
  git ls-files -- assets/efficientnet_lite0.onnx 'screenshots/*.png' 'tests/data/*' \
    'tests/snapshots/*' > target/gpu/slimmed.txt
  if ! xargs -a target/gpu/slimmed.txt git diff --quiet --; then
    echo "--slim: uncommitted changes in the files it would empty; commit or stash them" >&2
    exit 1
  fi
  while read -r f; do : > "$f"; done < target/gpu/slimmed.txt
  git ls-files -z | xargs -0 du -cb | tail -1
  exit 0
fi
if [ "${1:-}" = "--unslim" ]; then
  xargs -a target/gpu/slimmed.txt git checkout --
  git status --short
  exit 0
fi
out="${OUT:-$root/target/gpu_out}"
mkdir -p "$out"
. tools/gpu_setup.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
"$bin" --version > "$out/graft_version.txt" 2>&1

"${PYTHON:-python3}" - "$bin" "$work" "$out" <<'PY'
import glob, json, os, statistics, subprocess, sys, time
import numpy as np

graft, work, out = sys.argv[1:4]
# One lent run must bring back as much as it can: a deadline for the whole check (seconds
# from here), a timeout for each graft command, and the JSON rewritten after every step.
deadline = time.monotonic() + float(os.environ.get("GPU_CHECK_DEADLINE_S", "420"))
result = {"gpu": open(os.path.join(out, "gpu.txt")).read().strip()}

def save():
    json.dump(result, open(os.path.join(out, "gpu_check.json"), "w"), indent=1)

def left():
    return deadline - time.monotonic()

def run(args, log, timeout, env=None):
    t = time.perf_counter()
    timeout = max(1.0, min(timeout, left()))
    try:
        p = subprocess.run([graft] + args, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, **(env or {})))
        ok, text, err = p.returncode == 0, p.stdout + p.stderr, p.stderr.strip().splitlines()[-1:]
    except subprocess.TimeoutExpired as e:
        def s(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        ok, text, err = False, s(e.stdout) + s(e.stderr), [f"timed out after {timeout:.0f} s"]
    with open(os.path.join(out, log), "a") as f:
        f.write(" ".join(args) + f"\n[{time.perf_counter() - t:.1f} s]\n" + text + "\n")
    return ok, time.perf_counter() - t, err

def read_npy(path):
    return np.load(path).astype(np.float32)

# 1. Parity, wgpu and CPU, on the fixtures in the order that matters most (the default
# network and the gallery's families first), within a share of the deadline.
first = ["efficientnet_lite0_default", "mobilenet_v2_op10", "resnet18_op13",
         "efficientnet_lite0_op13", "googlenet_op11", "squeezenet1_1_op13",
         "shufflenet_v2_op11", "densenet121_op13", "efficientnet_b0_op16", "vgg16_op13"]
dirs = sorted(glob.glob(os.environ.get("GPU_CHECK_FIXTURES", "tests/fixtures/*/")))
dirs.sort(key=lambda d: (first.index(os.path.basename(d.rstrip("/")))
                         if os.path.basename(d.rstrip("/")) in first else len(first)))
parity_until = time.monotonic() + float(os.environ.get("GPU_CHECK_PARITY_S", "100"))
parity = {}
for d in dirs:
    if time.monotonic() > parity_until:
        parity["skipped_for_time"] = len(dirs) - len(parity)
        break
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
                             "--output", o, "--device", device], "parity.log", 60)
        if ok:
            got = read_npy(o)
            scale = max(1.0, float(np.abs(want).max()))
            row[device] = float(np.abs(got.reshape(want.shape) - want).max() / scale)
        else:
            row[device] = f"failed: {err}"
        row[device + "_s"] = round(secs, 1)
    parity[name] = row
    result["parity"] = parity
    save()
result["parity"] = parity
result["parity_wgpu_max_rel_error"] = max(
    (r["wgpu"] for r in parity.values() if isinstance(r, dict) and isinstance(r.get("wgpu"), float)),
    default=None)
save()

# 2. The dataset (tools/gpu_dataset.py).
# GPU_CHECK_SKIP_TRAINING=1 stops after parity (a dry run on a machine without a GPU).
if os.environ.get("GPU_CHECK_SKIP_TRAINING"):
    print(json.dumps(result, indent=1))
    sys.exit(0)
try:
    sys.path.insert(0, "tools")
    import gpu_dataset
    data = os.path.join(work, "data")
    gpu_dataset.write(data)
except ImportError as e:
    data = None
    result["training_error"] = f"no PIL to write the dataset: {e}"

# MobileNet-v2 for both sides (the TorchScript exporter, as tools/make_fixtures.py uses; the
# dynamo exporter where a newer torch has dropped it).
torch_ok = True
try:
    import torch, torchvision
    result["torch"] = torch.__version__
    result["cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
    mnv2 = os.path.join(work, "mobilenet_v2.onnx")
    kw = dict(opset_version=13, input_names=["input"], output_names=["logits"],
              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    net = torchvision.models.mobilenet_v2().eval()
    try:
        torch.onnx.export(net, torch.zeros(1, 3, 224, 224), mnv2, dynamo=False, **kw)
        result["mobilenet_v2_exporter"] = "torchscript"
    except Exception as e:
        result["mobilenet_v2_torchscript_export_error"] = repr(e)
        torch.onnx.export(net, (torch.zeros(1, 3, 224, 224),), mnv2, dynamo=True,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("N")},))
        result["mobilenet_v2_exporter"] = "dynamo"
except Exception as e:
    torch_ok = False
    mnv2 = None
    result["torch_error"] = repr(e)
save()

training = {}
result["training"] = training

# 3. The peer first (seconds): PyTorch CUDA, float32 (what Graft's wgpu path computes), at its
# best of NCHW and channels-last with cuDNN's autotuner on; median of 20 steps after 5 warm-ups.
if torch_ok and torch.cuda.is_available():
    sys.path.insert(0, "tools")
    from efficientnet_lite0 import EfficientNetLite0
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    def torch_speed(make, batch, mode, layout):
        """Fine-tuning: every layer trains. Frozen: only the last Linear trains, the rest in
        inference mode without gradients (the naive loop: no feature cache)."""
        m = make().to(dev).train()
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        m = m.to(memory_format=fmt)
        head = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
        if mode == "frozen":
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
            for p in head.parameters():
                p.requires_grad_(True)
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
        x = torch.randn(batch, 3, 224, 224, device=dev).to(memory_format=fmt)
        y = torch.randint(0, 4, (batch,), device=dev)
        loss_fn = torch.nn.CrossEntropyLoss()
        times = []
        for i in range(25):
            torch.cuda.synchronize()
            t = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(m(x)[:, :4], y)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            if i >= 5:
                times.append(time.perf_counter() - t)
        return batch / statistics.median(times)
    for net, make in (("lite0", EfficientNetLite0), ("mobilenet_v2", torchvision.models.mobilenet_v2)):
        for batch in (32, 128):
            for mode in ("finetune", "frozen"):
                key = f"{net} b{batch} {mode}"
                row = training.setdefault(key, {})
                for layout in ("nchw", "channels_last"):
                    try:
                        row[f"torch_cuda_{layout}_images_per_s"] = torch_speed(make, batch, mode, layout)
                    except Exception as e:
                        row[f"torch_{layout}_error"] = repr(e)
                speeds = [v for k, v in row.items() if k.endswith("_images_per_s")]
                if speeds:
                    row["torch_cuda_images_per_s"] = max(speeds)
                save()
    torch.cuda.empty_cache()

# 4. Graft on wgpu, the most telling runs first: images/s from the training report, overall
# (the first epoch's shader compilation and autotuning included) and the median step of the
# second epoch (steady state, the peer's measure).
train_device = os.environ.get("GPU_CHECK_TRAIN_DEVICE", "wgpu")
if data:
    # The second run is Graft's own CPU path on the same machine's cores: on a machine whose
    # CPU is strong and GPU weak (or the reverse), which should `--device auto` pick? The
    # third is the first again with Graft's GPU ops off (`GRAFT_GPU_OPS=0`: burn's depthwise
    # weight gradient, src/engine/gpu_train.rs): what they gain.
    burn_ops = "burn's depthwise weight gradient"
    runs = [("lite0", "default", 32, "finetune", train_device),
            ("lite0", "default", 32, "finetune", "cpu"),
            ("lite0", "default", 32, "finetune", train_device, burn_ops),
            ("lite0", "default", 32, "frozen", train_device),
            ("mobilenet_v2", mnv2, 32, "finetune", train_device),
            ("lite0", "default", 128, "finetune", train_device),
            ("mobilenet_v2", mnv2, 128, "finetune", train_device),
            ("mobilenet_v2", mnv2, 32, "frozen", train_device),
            ("lite0", "default", 128, "frozen", train_device),
            ("mobilenet_v2", mnv2, 128, "frozen", train_device)]
    runs = list(dict.fromkeys(runs))  # a dry run on the CPU has no separate reference run
    for net, model, batch, mode, device, *variant in runs:
        key = f"{net} b{batch} {mode}" + ("" if device == train_device else f" {device}")
        key += "".join(f", {v}" for v in variant)
        row = training.setdefault(key, {})
        if model is None:
            continue
        if left() < 20:
            row["graft_error"] = "skipped: the check's deadline"
            continue
        report = os.path.join(work, f"{net}_{batch}_{mode}_{device}{'_burn_ops' if variant else ''}.json")
        args = ["train", "--model", model, "--data", data, "--epochs", "2",
                "--batch", str(batch), "--device", device, "--val-split", "0",
                "--export", os.path.join(work, f"{net}.onnx"), "--report", report]
        if mode == "frozen":
            args.append("--freeze-backbone")
        ok, secs, err = run(args, "train.log", 150, {"GRAFT_GPU_OPS": "0"} if variant else None)
        if ok:
            r = json.load(open(report))
            its = r["history"]["iterations"]
            steady = its[len(its) // 2:]
            row.update({"graft_images_per_s": r["images_per_sec"], "wall_s": secs,
                        "graft_epoch_seconds": r.get("epoch_seconds"),
                        "cached_frozen_layers": r["cached_frozen_layers"]})
            if steady:
                row["graft_steady_images_per_s"] = statistics.median(
                    x["images_per_sec"] for x in steady)
                t = row.get("torch_cuda_images_per_s")
                if t:
                    row["ratio_graft_steady_over_torch"] = row["graft_steady_images_per_s"] / t
        else:
            row["graft_error"] = err
            row["wall_s"] = secs
        save()

save()
print(json.dumps(result, indent=1))
PY
