#!/usr/bin/env python3
"""Object detection, Graft vs a PyTorch script of the same recipe, same machine, same split.

    cargo build --release
    tools/pyenv.sh python tools/make_detection_dataset.py target/bench_detect/data
    MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \
        tools/pyenv.sh python tools/bench_detect.py [--pth efficientnet-lite0.pth] \
        [--epochs 30] [--finetune-epochs 8]

The recipe, for both: the embedded EfficientNet-Lite0 (ImageNet weights; PyTorch loads the
same checkpoint, tools/efficientnet_lite0.py), a detection head (Conv 3×3 → 256, BatchNorm,
LeakyReLU 0.1, 1×1 prediction Conv; objectness/class biases at a 1 % prior) on its deepest
stride-16 map (Graft's default), the anchors Graft estimated (read from Graft's export, so
both use the same), 224×224 letterbox input, (p − 127)/128, no augmentation, Adam lr 1e-3, L2 1e-4, batch 16,
seed 0 (--seed). Loss: 1 − GIoU at assigned cells (torchvision's generalized_box_iou_loss), objectness
BCE summed over cells per image with YOLO v3's ignore rule (IoU > 0.5), class BCE.
1. Frozen backbone: both compute the backbone's features once (PyTorch at its best: no
   backbone pass per epoch), then train the head for --epochs.
2. Fine-tuned: from the frozen run's head, every layer trains for --finetune-epochs at lr
   1e-4 (BatchNorm in training mode in the backbone for both).
mAP@0.5 (VOC all points) is computed here, by one Python implementation, for both: PyTorch's
boxes after torchvision's batched_nms, Graft's from its exported file run in ONNX Runtime
(decoding and NMS inside the file). Graft's own report is printed beside it. Wall time is
the whole training (features included; Graft's process start and import included).
PyTorch runs on every core (tools/peer.py) with the malloc settings above.
--scales 2 trains Graft's two-scale head (stride 16 and 32, --anchors per scale) and skips the
PyTorch reference, which has one scale.
"""
import argparse, glob, json, os, subprocess, sys, time

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402
import peer  # noqa: E402
from bench_train import checkpoint  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
WORK = os.path.join(ROOT, "target", "bench_detect")
MEAN, STD = 127 / 255, 128 / 255
SIDE, STRIDE = 224, 16
SCORE, IOU, MAX_DET = 0.001, 0.45, 100


def read_yolo(root, split):
    names = [l.split(":", 1)[1].strip() for l in open(f"{root}/data.yaml") if l.startswith("  ")]
    items = []
    for path in sorted(glob.glob(f"{root}/images/{split}/*.png")):
        w, h = Image.open(path).size
        label = path.replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt"
        boxes = []
        for line in open(label).read().split("\n"):
            if line.strip():
                c, cx, cy, bw, bh = line.split()
                cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
                boxes.append((int(c), [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
        items.append((path, (w, h), boxes))
    return names, items


def letterbox(path):
    """The image in a SIDE square (grey 114 padding), normalised; the placement (s, ox, oy)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = SIDE / max(w, h)
    nw, nh = round(w * s), round(h * s)
    canvas = Image.new("RGB", (SIDE, SIDE), (114, 114, 114))
    ox, oy = (SIDE - w * s) / 2, (SIDE - h * s) / 2
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), (int(round(ox)), int(round(oy))))
    x = (np.asarray(canvas, np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x.transpose(2, 0, 1).copy()), (s, ox, oy)


class Backbone(nn.Module):
    """The network up to Graft's default detection feature: the deepest stride-16 map, block
    11's expansion (672 channels, 14×14 at 224; `/_blocks.11/act/Clip` in the ONNX file)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        x = n.act(n._bn0(n._stem(x)))
        for b in n._blocks[:11]:
            x = b(x)
        b = n._blocks[11]
        return b.act(b._bn0(b._expand_conv(x)))


class Head(nn.Module):
    def __init__(self, anchors, classes):
        super().__init__()
        per = 5 + classes
        self.conv = nn.Conv2d(672, 256, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(256, eps=1e-5, momentum=0.1)
        self.act = nn.LeakyReLU(0.1)
        self.predict = nn.Conv2d(256, len(anchors) * per, 1)
        with torch.no_grad():
            b = torch.zeros(len(anchors) * per)
            for k in range(len(b)):
                if k % per >= 4:
                    b[k] = -np.log(99.0)
            self.predict.bias.copy_(b)

    def forward(self, f):
        return self.predict(self.act(self.bn(self.conv(f))))


def decode_boxes(p, anchors):
    """p [B, A, per, H, W] → boxes [B, A, H, W, 4] (x0 y0 x1 y1, input pixels)."""
    _, _, _, h, w = p.shape
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    a = torch.tensor(anchors, dtype=torch.float32)
    cx = (torch.sigmoid(p[:, :, 0]) + gx) * STRIDE
    cy = (torch.sigmoid(p[:, :, 1]) + gy) * STRIDE
    bw = a[None, :, 0, None, None] * torch.exp(p[:, :, 2].clamp(max=10))
    bh = a[None, :, 1, None, None] * torch.exp(p[:, :, 3].clamp(max=10))
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)


def shape_iou(a, b):
    inter = min(a[0], b[0]) * min(a[1], b[1])
    return inter / (a[0] * a[1] + b[0] * b[1] - inter)


def targets(objects, anchors, h, w):
    """Graft's assignment (detect/yolo.rs): the centre's cell, the best anchor by centred IoU,
    the larger box wins a shared cell and anchor."""
    out = {}
    for c, b in sorted(objects, key=lambda o: -(o[1][2] - o[1][0]) * (o[1][3] - o[1][1])):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        j, i = min(int(cx / STRIDE), w - 1), min(int(cy / STRIDE), h - 1)
        bw, bh = max(b[2] - b[0], 1e-3), max(b[3] - b[1], 1e-3)
        k = max(range(len(anchors)), key=lambda q: shape_iou((bw, bh), anchors[q]))
        out.setdefault((k, i, j), (c, b))
    return out


def loss_fn(pred, batch_objects, anchors, classes):
    bsz, _, h, w = pred.shape
    a = len(anchors)
    p = pred.view(bsz, a, 5 + classes, h, w)
    boxes = decode_boxes(p, anchors)
    obj_t = torch.zeros(bsz, a, h, w)
    counted = torch.ones(bsz, a, h, w)
    pos_pred, pos_true, cls_logits, cls_true = [], [], [], []
    with torch.no_grad():
        for n, objs in enumerate(batch_objects):
            if objs:
                truth = torch.tensor([b for _, b in objs], dtype=torch.float32)
                ious = torchvision.ops.box_iou(boxes[n].reshape(-1, 4), truth).max(1).values
                counted[n] = (ious.view(a, h, w) <= 0.5).float()
    for n, objs in enumerate(batch_objects):
        for (k, i, j), (c, b) in targets(objs, anchors, h, w).items():
            obj_t[n, k, i, j] = 1
            counted[n, k, i, j] = 1
            pos_pred.append(boxes[n, k, i, j])
            pos_true.append(torch.tensor(b, dtype=torch.float32))
            cls_logits.append(p[n, k, 5:, i, j])
            t = torch.zeros(classes)
            t[c] = 1
            cls_true.append(t)
    bce = nn.functional.binary_cross_entropy_with_logits
    obj = (bce(p[:, :, 4], obj_t, reduction="none") * counted).sum() / bsz
    if pos_pred:
        box = torchvision.ops.generalized_box_iou_loss(
            torch.stack(pos_pred), torch.stack(pos_true), reduction="mean")
        cls = bce(torch.stack(cls_logits), torch.stack(cls_true), reduction="mean")
    else:
        box = cls = torch.zeros(())
    return box + obj + cls


def to_input_boxes(boxes, placement):
    s, ox, oy = placement
    return [(c, [b[0] * s + ox, b[1] * s + oy, b[2] * s + ox, b[3] * s + oy]) for c, b in boxes]


def predict(head, feats, placements, sizes, anchors, classes):
    """Boxes per image in its own pixels after torchvision's batched NMS (best class only)."""
    out = []
    with torch.no_grad():
        p = head(feats)
        bsz, _, h, w = p.shape
        p = p.view(bsz, len(anchors), 5 + classes, h, w)
        boxes = decode_boxes(p, anchors)
        for n in range(bsz):
            probs = torch.sigmoid(p[n, :, 5:]).permute(0, 2, 3, 1).reshape(-1, classes)
            best, cls = probs.max(1)
            score = torch.sigmoid(p[n, :, 4]).reshape(-1) * best
            b = boxes[n].reshape(-1, 4)
            keep = score >= SCORE
            b, score, cls = b[keep], score[keep], cls[keep]
            k = torchvision.ops.batched_nms(b, score, cls, IOU)[:MAX_DET]
            s, ox, oy = placements[n]
            b = (b[k] - torch.tensor([ox, oy, ox, oy])) / s
            b[:, 0::2] = b[:, 0::2].clamp(0, sizes[n][0])
            b[:, 1::2] = b[:, 1::2].clamp(0, sizes[n][1])
            out.append([(int(c), float(sc), bb.tolist()) for c, sc, bb in zip(cls[k], score[k], b)])
    return out


def voc_map50(predictions, truths, classes):
    """VOC all-points AP at IoU 0.5, mean over classes with truths."""
    aps = []
    for c in range(classes):
        dets = [(sc, n, b) for n, ps in enumerate(predictions) for cc, sc, b in ps if cc == c]
        dets.sort(key=lambda d: -d[0])
        gts = {n: [b for cc, b in t if cc == c] for n, t in enumerate(truths)}
        npos = sum(len(v) for v in gts.values())
        if npos == 0:
            continue
        used = {n: [False] * len(v) for n, v in gts.items()}
        tp, fp = [], []
        for _, n, b in dets:
            best, bi = 0.0, -1
            for i, g in enumerate(gts[n]):
                ix = max(0.0, min(b[2], g[2]) - max(b[0], g[0]))
                iy = max(0.0, min(b[3], g[3]) - max(b[1], g[1]))
                inter = ix * iy
                u = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                if u > 0 and inter / u > best:
                    best, bi = inter / u, i
            if best > 0.5 and not used[n][bi]:
                used[n][bi] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, 1e-12)
        mrec = np.concatenate([[0], rec, [1]])
        mpre = np.concatenate([[0], prec, [0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        idx = np.where(mrec[1:] != mrec[:-1])[0]
        aps.append(float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])))
    return float(np.mean(aps)) if aps else 0.0


def graft_train(data, out, epochs, extra, seed, model="default", scales=1):
    cmd = [GRAFT, "train", "--task", "detect", "--model", model, "--data", data,
           "--box-augment", "none", "--anchors", "5", "--scales", str(scales),
           "--epochs", str(epochs), "--batch", "16",
           "--l2", "1e-4", "--seed", str(seed), "--device", "cpu",
           # Validate once, at the end (as the PyTorch script does); the file keeps boxes down
           # to AP's score threshold.
           "--validation-frequency", "1000000", "--score", str(SCORE), "--iou", str(IOU),
           "--max", str(MAX_DET),
           "--export", out + ".onnx", "--report", out + ".json"] + (
               extra if "--lr" in extra else extra + ["--lr", "1e-3"])
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    secs = time.perf_counter() - t
    return secs, json.load(open(out + ".json"))


def graft_ort_map(model, val, classes):
    import onnxruntime as ort
    opts = peer.ort_options()
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    preds = []
    for path, (w, h), _ in val:
        x, (s, ox, oy) = letterbox(path)
        # boxes, scores, classes, batch_index, then the prediction map(s)
        boxes, scores, cls = sess.run(None, {sess.get_inputs()[0].name: x[None].numpy()})[:3]
        ps = []
        for b, sc, c in zip(boxes, scores, cls):
            b = [(b[0] - ox) / s, (b[1] - oy) / s, (b[2] - ox) / s, (b[3] - oy) / s]
            b = [min(max(b[0], 0), w), min(max(b[1], 0), h), min(max(b[2], 0), w), min(max(b[3], 0), h)]
            ps.append((int(c), float(sc), b))
        preds.append(ps)
    return voc_map50(preds, [t for _, _, t in val], classes)


def anchors_of(model):
    import onnx
    m = onnx.load(model)
    spec = json.loads(next(p.value for p in m.metadata_props if p.key == "graft.detection"))
    return [[tuple(a) for a in s["anchors"]] for s in spec["scales"]]


def torch_train(pth, names, train, val, anchors, epochs, finetune_epochs, seed):
    torch.manual_seed(seed)
    classes = len(names)
    net = EfficientNetLite0().load_checkpoint(torch.load(pth, map_location="cpu"))
    backbone = peer.to_layout(peer.LAYOUT, Backbone(net).eval())
    head = peer.to_layout(peer.LAYOUT, Head(anchors, classes))
    t = time.perf_counter()
    xs, pl = zip(*[letterbox(p) for p, _, _ in train])
    xs = peer.to_layout(peer.LAYOUT, torch.stack(xs))
    objs = [to_input_boxes(b, q) for (_, _, b), q in zip(train, pl)]
    with torch.no_grad():
        feats = torch.cat([backbone(xs[i:i + 32]) for i in range(0, len(xs), 32)])
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        head.train()
        for idx in torch.randperm(len(feats), generator=g).split(16):
            opt.zero_grad()
            loss = loss_fn(head(feats[idx]), [objs[i] for i in idx], anchors, classes)
            loss.backward()
            opt.step()
    frozen_secs = time.perf_counter() - t
    vx, vpl = zip(*[letterbox(p) for p, _, _ in val])
    vx = peer.to_layout(peer.LAYOUT, torch.stack(vx))
    sizes = [s for _, s, _ in val]
    truths = [t for _, _, t in val]

    def score():
        backbone.eval(), head.eval()
        with torch.no_grad():
            vf = torch.cat([backbone(vx[i:i + 32]) for i in range(0, len(vx), 32)])
        return voc_map50(predict(head, vf, vpl, sizes, anchors, classes), truths, classes)

    frozen_map = score()
    if finetune_epochs == 0:
        return frozen_secs, frozen_map, 0.0, None
    t = time.perf_counter()
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-4, weight_decay=1e-4)
    for _ in range(finetune_epochs):
        backbone.train(), head.train()
        for idx in torch.randperm(len(xs), generator=g).split(16):
            opt.zero_grad()
            loss = loss_fn(head(backbone(xs[idx])), [objs[i] for i in idx], anchors, classes)
            loss.backward()
            opt.step()
    finetune_secs = time.perf_counter() - t
    return frozen_secs, frozen_map, finetune_secs, score()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth")
    ap.add_argument("--data", default=os.path.join(WORK, "data", "yolo"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--finetune-epochs", type=int, default=8)
    # Both sides' head initialisation and batch order (the split is the dataset's own).
    ap.add_argument("--seed", type=int, default=0)
    # Graft's head with two prediction maps (stride 16 and 32, 5 anchors each); the PyTorch
    # reference has one scale only, so it is not run.
    ap.add_argument("--scales", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())  # PyTorch alone would use the physical cores
    threads = torch.get_num_threads()
    os.makedirs(WORK, exist_ok=True)
    names, train = read_yolo(a.data, "train")
    _, val = read_yolo(a.data, "val")
    frozen = os.path.join(WORK, "graft_frozen")
    g_frozen_secs, g_frozen = graft_train(a.data, frozen, a.epochs, ["--freeze-backbone"], a.seed,
                                          scales=a.scales)
    anchors = anchors_of(frozen + ".onnx")
    g_frozen_ort = graft_ort_map(frozen + ".onnx", val, len(names))
    tuned = os.path.join(WORK, "graft_finetuned")
    g_tune_secs, g_tune, g_tune_ort = 0.0, {"detection": {"map50": None}}, None
    if a.finetune_epochs > 0:
        # Fine-tuning starts from the frozen run's head: the frozen export is the model.
        g_tune_secs, g_tune = graft_train(a.data, tuned, a.finetune_epochs, ["--lr", "1e-4"],
                                          a.seed, model=frozen + ".onnx", scales=a.scales)
        g_tune_ort = graft_ort_map(tuned + ".onnx", val, len(names))
    t_frozen_secs, t_frozen, t_tune_secs, t_tune = None, None, None, None
    if a.scales == 1:
        t_frozen_secs, t_frozen, t_tune_secs, t_tune = torch_train(
            checkpoint(a.pth), names, train, val, anchors[0], a.epochs, a.finetune_epochs,
            a.seed)
    result = {
        "peer": peer.settings(), "torch_threads": threads, "anchors": anchors, "seed": a.seed,
        "scales": a.scales,
        "train_images": len(train), "val_images": len(val),
        "frozen": {"epochs": a.epochs,
                   "graft": {"seconds": g_frozen_secs, "map50_ort": g_frozen_ort,
                             "map50_graft_report": g_frozen["detection"]["map50"]},
                   "pytorch": {"seconds": t_frozen_secs, "map50": t_frozen}},
        "finetuned": {"epochs": a.finetune_epochs,
                      "graft": {"seconds": g_tune_secs, "map50_ort": g_tune_ort,
                                "map50_graft_report": g_tune["detection"]["map50"]},
                      "pytorch": {"seconds": t_tune_secs, "map50": t_tune}},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
