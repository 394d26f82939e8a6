#!/usr/bin/env python3
"""A 50,000-image ImageFolder for the large-dataset measurements (docs/BENCHMARKS.md, issue 12).

    /usr/bin/python3 tools/make_large_dataset.py OUT [--count 50000] [--corrupt 10] [--seed 0]

Made from Fashion-MNIST's 60,000 training images (Debian's dataset-fashion-mnist, as
tools/fashion_mnist.py): the first COUNT images, each scaled to a drawn size (sides 28 to 160,
aspect 3:4 to 4:3), in a drawn format (PNG, JPEG, BMP, WebP; grey or tinted RGB), written to
OUT/<class>/<index>.<ext>. CORRUPT files are cut short (to 12 or 40 bytes), so a scan
at this size also lists skipped files. The same seed writes the same files.
"""
import argparse, os, random, sys
from multiprocessing import Pool

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_mnist  # noqa: E402

FORMATS = [("png", "PNG", 4), ("jpg", "JPEG", 4), ("bmp", "BMP", 1), ("webp", "WEBP", 1)]
SIDES = [28, 40, 56, 64, 80, 96, 112, 128, 160]


def plan(count, seed):
    """Each image's (index, class, width, height, format, tint), drawn once from the seed."""
    rng = random.Random(seed)
    formats = [f for f in FORMATS for _ in range(f[2])]
    out = []
    for i in range(count):
        side = rng.choice(SIDES)
        aspect = rng.uniform(0.75, 4 / 3)
        w, h = max(8, round(side * aspect)), side
        ext, fmt, _ = rng.choice(formats)
        tint = None if rng.random() < 0.5 else tuple(rng.randint(120, 255) for _ in range(3))
        out.append((i, w, h, ext, fmt, tint))
    return out


def write_one(args):
    (i, w, h, ext, fmt, tint), pixels, label, size, out = args
    img = Image.frombytes("L", size, pixels).resize((w, h), Image.BILINEAR)
    if tint is not None:
        img = Image.merge("RGB", [img.point(lambda v, t=t: v * t // 255) for t in tint])
    d = os.path.join(out, fashion_mnist.CLASSES[label])
    path = os.path.join(d, f"{i:05d}.{ext}")
    img.save(path, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--corrupt", type=int, default=10, help="files cut short after the header")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    items, size = fashion_mnist.read("train")
    if a.count > len(items):
        sys.exit(f"--count {a.count}: Fashion-MNIST has {len(items)} training images")
    for c in fashion_mnist.CLASSES:
        os.makedirs(os.path.join(a.out, c), exist_ok=True)
    work = [(p, items[p[0]][0], items[p[0]][1], size, a.out) for p in plan(a.count, a.seed)]
    with Pool(os.cpu_count()) as pool:
        paths = pool.map(write_one, work, chunksize=256)
    rng = random.Random(a.seed + 1)
    # Half cut inside the header (the scan's header check finds them), half after it (found
    # when training decodes them).
    for k, path in enumerate(rng.sample(paths, min(a.corrupt, len(paths)))):
        with open(path, "r+b") as f:
            f.truncate(12 if k % 2 else 40)
    total = sum(os.path.getsize(p) for p in paths)
    print(f"{len(paths)} images ({a.corrupt} cut short) in {len(fashion_mnist.CLASSES)} classes, "
          f"{total / 1e6:.0f} MB, under {a.out}")


if __name__ == "__main__":
    main()
