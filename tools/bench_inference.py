#!/usr/bin/env python3
"""Inference speed, CPU: Graft (burn flex) vs ONNX Runtime vs PyTorch, same machine, same run.

    cargo build --release
    MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
        tools/pyenv.sh python tools/bench_inference.py

    (tools/torchenv.sh instead: the same, with PyTorch 2.15 from PyPI as the PyTorch column)

    ... tools/bench_inference.py --others      # the other networks, batch 32 (issue 12's table)
    ... tools/bench_inference.py --models resnet18,vgg11 --batches 32

Each number is the median of timed runs after warm-up, in images per second; Graft and ONNX
Runtime alternate `--repeats` times and the ratio is the median of the rounds' ratios. PyTorch gets
its best CPU settings (eval, no_grad, channels-last where faster, glibc malloc thresholds from
the environment above); ONNX Runtime gets all graph optimisations and all cores.
"""
import inspect, json, os, subprocess, sys, time

import numpy as np
import onnxruntime as ort
import torch
import torchvision.models as tvm

sys.path.insert(0, os.path.dirname(__file__))
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402
import peer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
WORK = os.path.join(ROOT, "target", "bench")


def median_time(fn, iters, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench_torch(model, batch, iters):
    x = torch.randn(batch, 3, 224, 224)
    best = 0.0
    for channels_last in (False, True):
        m = model.to(memory_format=torch.channels_last) if channels_last else model
        xx = x.to(memory_format=torch.channels_last) if channels_last else x
        with torch.no_grad():
            t = median_time(lambda: m(xx), iters)
        best = max(best, batch / t)
    return best


def bench_ort(path, batch, iters):
    sess = ort.InferenceSession(path, peer.ort_options(), providers=["CPUExecutionProvider"])
    x = np.random.randn(batch, 3, 224, 224).astype(np.float32)
    name = sess.get_inputs()[0].name
    return batch / median_time(lambda: sess.run(None, {name: x}), iters)


def bench_graft(path, batch, iters):
    out = subprocess.run([GRAFT, "bench", path, "--batch", str(batch), "--iterations", str(iters),
                          "--device", "cpu"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_s"]


# torchvision networks (random weights: weights do not change speed), exported once.
TORCHVISION = {
    "mobilenet_v2": tvm.mobilenet_v2,
    "resnet18": tvm.resnet18,
    "googlenet": lambda: tvm.googlenet(aux_logits=False, init_weights=False),
    "vgg11": tvm.vgg11,
    "squeezenet1_1": tvm.squeezenet1_1,
    "shufflenet_v2": tvm.shufflenet_v2_x1_0,
    "densenet121": tvm.densenet121,
    "efficientnet_b0": tvm.efficientnet_b0,
}
OTHERS = ["resnet18", "googlenet", "vgg11", "squeezenet1_1", "mobilenet_v2", "shufflenet_v2",
          "densenet121", "efficientnet_b0"]


def network(name):
    """(ONNX path, PyTorch module) of a network by name."""
    if name == "efficientnet_lite0":
        return os.path.join(ROOT, "assets", "efficientnet_lite0.onnx"), EfficientNetLite0().eval()
    model = TORCHVISION[name]().eval()
    path = os.path.join(WORK, f"{name}.onnx")
    if not os.path.exists(path):
        # PyTorch 2.9 and later export through dynamo by default (which needs onnxscript);
        # the TorchScript exporter is the one Debian's 1.13 (tools/pyenv.sh) has.
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), path, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **legacy)
    return path, model


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="efficientnet_lite0,mobilenet_v2")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--others", action="store_true", help=f"batch 32 of {','.join(OTHERS)}")
    # This machine's speed drifts by tens of percent within minutes: Graft and ONNX Runtime
    # alternate, and the ratio is the median of each round's ratio.
    ap.add_argument("--repeats", type=int, default=3, help="rounds of Graft then ONNX Runtime")
    a = ap.parse_args()
    models = OTHERS if a.others else a.models.split(",")
    batches = [32] if a.others else [int(b) for b in a.batches.split(",")]
    os.makedirs(WORK, exist_ok=True)
    torch.set_num_threads(os.cpu_count())  # PyTorch alone would use the physical cores
    rows = []
    for name in models:
        path, model = network(name)
        for batch in batches:
            iters = 30 if batch == 1 else 8
            rounds = [(bench_graft(path, batch, iters), bench_ort(path, batch, iters))
                      for _ in range(a.repeats)]
            p = bench_torch(model, batch, iters)
            g, o = (float(np.median([r[i] for r in rounds])) for i in (0, 1))
            ratios = [gr / orr for gr, orr in rounds]
            rows.append((name, batch, g, o, p, float(np.median(ratios)), min(ratios), max(ratios)))
            print(rows[-1], flush=True)
    print(f"\npeer settings: {json.dumps(peer.settings())}, repeats: {a.repeats}\n")
    print("| model | batch | Graft img/s | ONNX Runtime img/s | PyTorch img/s | Graft / ORT (rounds) | Graft / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, b, g, o, p, r, lo, hi in rows:
        print(f"| {name} | {b} | {g:.1f} | {o:.1f} | {p:.1f} | {r:.2f}× ({lo:.2f}–{hi:.2f}) | {g / p:.2f}× |")


if __name__ == "__main__":
    main()
