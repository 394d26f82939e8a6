"""A detection dataset from what this machine has: scikit-image's sample photos (Debian's
python3-skimage), composited into scenes whose boxes are known exactly.

Objects: the cat's head from `chelsea`, the cup from `coffee` (both cut out with a soft
elliptical mask) and scikit-image's `logo` (its own alpha). Backgrounds: crops of `grass`,
`gravel`, `brick` (tinted), `hubble_deep_field`, `rocket`, `motorcycle_left` and `retina`.
Each 320×240 scene holds 1–4 objects, 40–150 px across, flipped and re-lit at random, apart
enough that no two overlap by more than IoU 0.3.

Written in all three layouts Graft reads, with the same scenes and boxes:
  OUT/yolo/  data.yaml, images/{train,val}/, labels/{train,val}/
  OUT/coco/  train/ (images + annotations/instances_train.json), val/ (likewise)
  OUT/voc/   train/ and val/, each Annotations/ + JPEGImages/

Usage: tools/pyenv.sh python tools/make_detection_dataset.py OUT [--train 240] [--val 80] [--seed 0]
"""
import argparse
import json
import os

import numpy as np
import skimage.io as io
from skimage.transform import resize

DATA = "/usr/share/skimage-data" if os.path.isdir("/usr/share/skimage-data") else \
    os.path.join(os.path.dirname(__import__("skimage").__file__), "data")
CLASSES = ["cat", "cup", "logo"]
W, H = 320, 240


def load(name):
    img = io.imread(os.path.join(DATA, name))
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img


def ellipse_mask(h, w, soft=0.08):
    y, x = np.mgrid[0:h, 0:w]
    d = ((x + 0.5 - w / 2) / (w / 2)) ** 2 + ((y + 0.5 - h / 2) / (h / 2)) ** 2
    return np.clip((1.0 - d) / soft, 0.0, 1.0)


def objects():
    """(class, RGB float image, alpha) cut-outs."""
    chelsea = load("chelsea.png")[20:250, 130:340] / 255.0  # the cat's head
    coffee = load("coffee.png")[40:340, 150:460] / 255.0  # the cup and saucer
    logo = load("logo.png") / 255.0
    return [
        (0, chelsea, ellipse_mask(*chelsea.shape[:2])),
        (1, coffee, ellipse_mask(*coffee.shape[:2])),
        (2, logo[..., :3], logo[..., 3]),
    ]


def backgrounds():
    tint = [np.array([0.6, 0.9, 0.5]), np.array([0.8, 0.75, 0.7]), np.array([0.9, 0.6, 0.5])]
    out = []
    for (name, t) in zip(["grass.png", "gravel.png", "brick.png"], tint):
        out.append(load(name) / 255.0 * t)
    for name in ["hubble_deep_field.jpg", "rocket.jpg", "motorcycle_left.png", "retina.jpg"]:
        out.append(load(name)[..., :3] / 255.0)
    return out


def background(rng, pool):
    src = pool[rng.integers(len(pool))]
    scale = rng.uniform(0.6, 1.0)
    h, w = int(src.shape[0] * scale), int(src.shape[1] * scale)
    h, w = max(h, H), max(w, W)
    img = resize(src, (h, w), anti_aliasing=True)
    y, x = rng.integers(0, h - H + 1), rng.integers(0, w - W + 1)
    return img[y:y + H, x:x + W].copy()


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scene(rng, objs, pool):
    img = background(rng, pool)
    boxes = []
    for _ in range(rng.integers(1, 5)):
        cls, rgb, alpha = objs[rng.integers(len(objs))]
        side = rng.uniform(40, 150)
        k = side / max(rgb.shape[:2])
        h, w = max(8, int(rgb.shape[0] * k)), max(8, int(rgb.shape[1] * k))
        if h >= H or w >= W:
            continue
        x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        box = (float(x0), float(y0), float(x0 + w), float(y0 + h))
        if any(iou(box, b) > 0.3 for _, b in boxes):
            continue
        o = resize(rgb, (h, w), anti_aliasing=True)
        a = resize(alpha, (h, w), anti_aliasing=True)[..., None]
        if rng.random() < 0.5:
            o, a = o[:, ::-1], a[:, ::-1]
        o = np.clip(o * rng.uniform(0.75, 1.25), 0, 1)
        region = img[y0:y0 + h, x0:x0 + w]
        img[y0:y0 + h, x0:x0 + w] = region * (1 - a) + o * a
        boxes.append((cls, box))
    noise = rng.normal(0, 0.015, img.shape)
    return (np.clip(img + noise, 0, 1) * 255).astype(np.uint8), boxes


def write_yolo(root, split, name, img, boxes):
    os.makedirs(f"{root}/images/{split}", exist_ok=True)
    os.makedirs(f"{root}/labels/{split}", exist_ok=True)
    io.imsave(f"{root}/images/{split}/{name}.png", img, check_contrast=False)
    with open(f"{root}/labels/{split}/{name}.txt", "w") as f:
        for c, (x0, y0, x1, y1) in boxes:
            f.write(f"{c} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} "
                    f"{(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}\n")


def write_voc(root, name, img, boxes):
    os.makedirs(f"{root}/JPEGImages", exist_ok=True)
    os.makedirs(f"{root}/Annotations", exist_ok=True)
    io.imsave(f"{root}/JPEGImages/{name}.png", img, check_contrast=False)
    objs = "".join(
        f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox>"
        f"<xmin>{x0:.0f}</xmin><ymin>{y0:.0f}</ymin><xmax>{x1:.0f}</xmax><ymax>{y1:.0f}</ymax>"
        f"</bndbox></object>" for c, (x0, y0, x1, y1) in boxes)
    with open(f"{root}/Annotations/{name}.xml", "w") as f:
        f.write(f"<annotation><filename>{name}.png</filename><size><width>{W}</width>"
                f"<height>{H}</height><depth>3</depth></size>{objs}</annotation>")


def write_coco(root, split, scenes):
    os.makedirs(f"{root}/{split}/images", exist_ok=True)
    os.makedirs(f"{root}/{split}/annotations", exist_ok=True)
    images, annotations = [], []
    for i, (name, img, boxes) in enumerate(scenes):
        io.imsave(f"{root}/{split}/images/{name}.png", img, check_contrast=False)
        images.append({"id": i + 1, "file_name": f"{name}.png", "width": W, "height": H})
        for c, (x0, y0, x1, y1) in boxes:
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    with open(f"{root}/{split}/annotations/instances_{split}.json", "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=240)
    ap.add_argument("--val", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    objs, pool = objects(), backgrounds()
    yolo = f"{a.out}/yolo"
    os.makedirs(yolo, exist_ok=True)
    with open(f"{yolo}/data.yaml", "w") as f:
        f.write("path: .\ntrain: images/train\nval: images/val\nnames:\n")
        f.writelines(f"  {i}: {n}\n" for i, n in enumerate(CLASSES))
    counts = {}
    for split, n in [("train", a.train), ("val", a.val)]:
        scenes = []
        for i in range(n):
            img, boxes = scene(rng, objs, pool)
            name = f"{split}_{i:04d}"
            scenes.append((name, img, boxes))
            write_yolo(yolo, split, name, img, boxes)
            write_voc(f"{a.out}/voc/{split}", name, img, boxes)
            for c, _ in boxes:
                counts[(split, CLASSES[c])] = counts.get((split, CLASSES[c]), 0) + 1
        write_coco(f"{a.out}/coco", split, scenes)
    print(f"wrote {a.out}/{{yolo,coco,voc}}: {a.train} training and {a.val} validation scenes;",
          ", ".join(f"{s} {c} {n}" for (s, c), n in sorted(counts.items())))


if __name__ == "__main__":
    main()
