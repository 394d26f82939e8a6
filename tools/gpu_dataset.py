"""The GPU checks' training data (tools/gpu_check.sh, tools/gpu_profile.sh): 4 classes x 128
noisy 224 px PNGs, each class its own mean colour. Training speed does not depend on content."""
import os

import numpy as np
from PIL import Image


def write(data):
    rng = np.random.default_rng(0)
    for c in range(4):
        os.makedirs(os.path.join(data, f"c{c}"), exist_ok=True)
        base = rng.integers(0, 255, 3)
        for i in range(128):
            px = np.clip(base + rng.normal(0, 40, (224, 224, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(os.path.join(data, f"c{c}", f"{i}.png"))
