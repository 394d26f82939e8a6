#!/usr/bin/env python3
"""Full-size torchvision networks, freshly exported, through `graft infer` against PyTorch.

Random weights (nothing is downloaded), BatchNorm statistics randomised, exported at several
opsets with BatchNorm folded and kept, with a dynamic batch axis and with a fixed batch of 1.
Each is run by Graft at batch 2 and compared with PyTorch: max |graft - torch| / max(1, |torch|).

    cargo build --release
    tools/pyenv.sh python tools/check_zoo.py [name ...]

Not a test (it takes minutes and needs python3-torch); its result goes in docs/BENCHMARKS.md.
"""
import os, subprocess, sys, time

import numpy as np
import torch
import torchvision.models as tvm

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import randomise_batchnorm  # noqa: E402
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
WORK = os.path.join(ROOT, "target", "zoo")
EVAL, KEEP = torch.onnx.TrainingMode.EVAL, torch.onnx.TrainingMode.PRESERVE

MODELS = {
    "googlenet": lambda: tvm.googlenet(aux_logits=False, init_weights=True),
    "vgg16": tvm.vgg16, "vgg19": tvm.vgg19,
    "squeezenet1_0": tvm.squeezenet1_0, "squeezenet1_1": tvm.squeezenet1_1,
    "mobilenet_v2": tvm.mobilenet_v2, "mobilenet_v3_large": tvm.mobilenet_v3_large,
    "shufflenet_v2_x1_0": tvm.shufflenet_v2_x1_0,
    "resnet18": tvm.resnet18, "resnet50": tvm.resnet50, "alexnet": tvm.alexnet,
    "densenet121": tvm.densenet121, "efficientnet_b0": tvm.efficientnet_b0,
    "efficientnet_lite0": EfficientNetLite0, "mnasnet1_0": tvm.mnasnet1_0,
    "regnet_x_400mf": tvm.regnet_x_400mf, "regnet_y_400mf": tvm.regnet_y_400mf,
    "convnext_tiny": tvm.convnext_tiny,
}
# (opset, BatchNorm, dynamic batch)
VARIANTS = [(11, EVAL, True), (13, KEEP, True), (17, EVAL, False)]


def main():
    os.makedirs(WORK, exist_ok=True)
    names = sys.argv[1:] or list(MODELS)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 224, 224, generator=gen)
    np.save(os.path.join(WORK, "x.npy"), x.numpy())
    rows, worst = [], 0.0
    for name in names:
        torch.manual_seed(0)
        model = MODELS[name]().eval()
        with torch.no_grad():
            randomise_batchnorm(model, gen)
            ref = model(x).numpy()
        for opset, bn, dynamic in VARIANTS:
            tag = f"{name}_op{opset}_{'bnkept' if bn == KEEP else 'bnfolded'}_{'dyn' if dynamic else 'b1'}"
            path = os.path.join(WORK, tag + ".onnx")
            try:
                torch.onnx.export(model, x[:1], path, opset_version=opset, input_names=["input"],
                                  output_names=["logits"], training=bn, do_constant_folding=True,
                                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}} if dynamic else None)
            except Exception as e:  # an exporter limitation, not Graft's
                rows.append((tag, "export failed: " + str(e).splitlines()[0][:60], ""))
                continue
            out = os.path.join(WORK, tag + ".out.npy")
            t = time.time()
            p = subprocess.run([GRAFT, "infer", path, "--input", os.path.join(WORK, "x.npy"), "--output", out],
                               capture_output=True, text=True)
            secs = time.time() - t
            if p.returncode != 0:
                rows.append((tag, "FAILED: " + p.stderr.strip().splitlines()[-1][:100], f"{secs:.1f}s"))
                worst = float("inf")
                continue
            got = np.load(out)
            err = float(np.abs(got - ref).max() / max(1.0, np.abs(ref).max()))
            worst = max(worst, err)
            rows.append((tag, f"{err:.1e}", f"{secs:.1f}s"))
            print(rows[-1], flush=True)
            os.remove(path)
    print("\n| export | max rel. error vs PyTorch | graft infer wall time |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    print(f"\nworst: {worst:.1e}")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
