#!/usr/bin/env python3
"""Comparing backbones vs training one: `graft compare` on five networks (new head, backbone
frozen, features cached) against a naive PyTorch loop fine-tuning one of them end to end, on
the Fashion-MNIST sample (assets/sample_data: 4 classes, 160 images, 20 % validation), same
recipe (Adam lr 1e-3, batch 32, 10 epochs, seed 0, resize 256 / crop 224, ImageNet mean/std).

    cargo build --release
    MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
        tools/pyenv.sh python tools/bench_compare.py

The five are torchvision's ResNet-18, MobileNet-v2, SqueezeNet 1.1, ShuffleNet-v2 and
GoogLeNet exported here with random weights (the gallery's files cannot be downloaded on this
machine; the time of a pass does not depend on the weights' values). PyTorch runs on every
core (tools/peer.py), decodes and resizes every image every epoch as a plain script does, and
validates after each epoch like Graft.
"""
import json, os, random, subprocess, sys, time

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import peer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
WORK = os.path.join(ROOT, "target", "bench_compare")
DATA = os.path.join(ROOT, "assets", "sample_data")
EPOCHS, BATCH, LR = 10, 32, 1e-3
NETWORKS = {
    "resnet18": lambda: torchvision.models.resnet18(),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(),
    "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(),
    "shufflenet_v2": lambda: torchvision.models.shufflenet_v2_x1_0(),
    "googlenet": lambda: torchvision.models.googlenet(aux_logits=False, init_weights=True),
}


def export(name):
    path = os.path.join(WORK, f"{name}.onnx")
    if not os.path.exists(path):
        m = NETWORKS[name]().eval()
        torch.onnx.export(m, torch.zeros(1, 3, 224, 224), path, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return path


def samples():
    classes = sorted(d for d in os.listdir(DATA) if os.path.isdir(os.path.join(DATA, d)))
    items = [(os.path.join(DATA, c, f), i) for i, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(DATA, c)))]
    random.Random(0).shuffle(items)
    n_val = len(items) // 5
    return classes, items[n_val:], items[:n_val]


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((round(w * s), round(h * s)), Image.BILINEAR)
    w, h = img.size
    l, t = (w - 224) // 2, (h - 224) // 2
    img = img.crop((l, t, l + 224, t + 224))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
    return (x - MEAN) / STD


def pytorch_one(classes, train, val):
    """ResNet-18 fine-tuned end to end: the naive loop."""
    torch.manual_seed(0)
    m = torchvision.models.resnet18()
    m.fc = nn.Linear(m.fc.in_features, len(classes))
    m = peer.to_layout(peer.LAYOUT, m)
    opt = torch.optim.Adam(m.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        m.train()
        order = list(train)
        random.Random(epoch).shuffle(order)
        for i in range(0, len(order), BATCH):
            batch = order[i:i + BATCH]
            x = peer.to_layout(peer.LAYOUT, torch.stack([load(p) for p, _ in batch]))
            y = torch.tensor([c for _, c in batch])
            opt.zero_grad()
            loss_fn(m(x), y).backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            correct = sum(int(m(peer.to_layout(peer.LAYOUT, load(p)[None])).argmax()) == c for p, c in val)
    return time.perf_counter() - start, correct / len(val)


def main():
    os.makedirs(WORK, exist_ok=True)
    torch.set_num_threads(os.cpu_count())  # PyTorch alone would use the physical cores
    threads = torch.get_num_threads()
    paths = [export(n) for n in NETWORKS]
    classes, train, val = samples()
    report = os.path.join(WORK, "compare.json")
    start = time.perf_counter()
    subprocess.check_call([GRAFT, "compare", "--models", ",".join(paths), "--data", DATA,
                           "--val-split", "0.2", "--epochs", str(EPOCHS), "--batch", str(BATCH),
                           "--lr", str(LR), "--seed", "0", "--report", report])
    graft_s = time.perf_counter() - start
    torch_s, torch_acc = pytorch_one(classes, train, val)
    rows = json.load(open(report))["networks"]
    print(json.dumps({
        "graft_compare_5_networks_s": round(graft_s, 1),
        "pytorch_finetune_resnet18_s": round(torch_s, 1),
        "ratio": round(graft_s / torch_s, 3),
        "graft_rows": [{k: r[k] for k in ("model", "validation_accuracy", "train_seconds",
                                          "inference_images_per_s")} for r in rows],
        "pytorch_validation_accuracy": torch_acc,
        "train_images": len(train), "validation_images": len(val),
        "settings": peer.settings(), "torch_threads": threads,
    }, indent=1))


main()
