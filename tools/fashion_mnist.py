#!/usr/bin/env python3
"""Fashion-MNIST (Debian package dataset-fashion-mnist, MIT licence, Zalando SE) as image
folders.

    python3 tools/fashion_mnist.py sample                # assets/sample_data (committed)
    python3 tools/fashion_mnist.py folders OUT --train-per-class 100 [--test]

`sample` writes the small dataset the app opens on first start: 4 classes, 40 images each,
the first images of each class in the training set. `folders` writes OUT/train (N per class,
the first N of each class) and, with --test, OUT/test (all 10,000 test images) for the
accuracy benchmark (tools/bench_train.py).
"""
import argparse, gzip, os, struct

from PIL import Image

SRC = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
SAMPLE_CLASSES = ["trouser", "sandal", "sneaker", "bag"]


def read(kind):
    with gzip.open(os.path.join(SRC, f"{kind}-images-idx3-ubyte.gz")) as f:
        _, n, h, w = struct.unpack(">IIII", f.read(16))
        images = f.read(n * h * w)
    with gzip.open(os.path.join(SRC, f"{kind}-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = f.read(n)
    return [(images[i * h * w:(i + 1) * h * w], labels[i]) for i in range(n)], (w, h)


def write(items, size, out, classes, per_class=None):
    counts = {c: 0 for c in classes}
    for i, (pixels, label) in enumerate(items):
        name = CLASSES[label]
        if name not in counts or (per_class is not None and counts[name] >= per_class):
            continue
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        Image.frombytes("L", size, pixels).save(os.path.join(d, f"{i:05d}.png"), optimize=True)
        counts[name] += 1
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sample", "folders"])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--train-per-class", type=int, default=100)
    ap.add_argument("--test", action="store_true")
    a = ap.parse_args()
    train, size = read("train")
    if a.what == "sample":
        out = os.path.join(ROOT, "assets", "sample_data")
        print(write(train, size, out, SAMPLE_CLASSES, per_class=40))
        return
    print(write(train, size, os.path.join(a.out, "train"), CLASSES, per_class=a.train_per_class))
    if a.test:
        test, size = read("t10k")
        print(write(test, size, os.path.join(a.out, "test"), CLASSES))


if __name__ == "__main__":
    main()
