#!/usr/bin/env python3
"""Inference speed, CPU: Graft (burn flex) vs ONNX Runtime vs PyTorch, same machine, same run.

    cargo build --release
    MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
        tools/pyenv.sh python tools/bench_inference.py

Each number is the median of timed runs after warm-up, in images per second. PyTorch gets
its best CPU settings (eval, no_grad, channels-last where faster, glibc malloc thresholds from
the environment above); ONNX Runtime gets all graph optimisations and all cores.
"""
import json, os, subprocess, sys, time

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
    out = subprocess.run([GRAFT, "bench", path, "--batch", str(batch), "--iterations", str(iters)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_s"]


def main():
    os.makedirs(WORK, exist_ok=True)
    torch.set_num_threads(os.cpu_count())  # PyTorch alone would use the physical cores
    models = {
        "efficientnet_lite0": (os.path.join(ROOT, "assets", "efficientnet_lite0.onnx"), None),
        "mobilenet_v2": (os.path.join(WORK, "mobilenet_v2.onnx"), tvm.mobilenet_v2),
    }
    rows = []
    for name, (path, build) in models.items():
        if name == "efficientnet_lite0":
            import onnx
            sd = None
            model = EfficientNetLite0().eval()  # weights do not change speed
        else:
            model = build().eval()
            torch.onnx.export(model, torch.randn(1, 3, 224, 224), path, opset_version=13,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        for batch in (1, 32):
            iters = 30 if batch == 1 else 8
            g = bench_graft(path, batch, iters)
            o = bench_ort(path, batch, iters)
            p = bench_torch(model, batch, iters)
            rows.append((name, batch, g, o, p))
            print(rows[-1], flush=True)
    print(f"\npeer settings: {json.dumps(peer.settings())}\n")
    print("| model | batch | Graft img/s | ONNX Runtime img/s | PyTorch img/s | Graft / ORT | Graft / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, b, g, o, p in rows:
        print(f"| {name} | {b} | {g:.1f} | {o:.1f} | {p:.1f} | {g / o:.2f}× | {g / p:.2f}× |")


if __name__ == "__main__":
    main()
