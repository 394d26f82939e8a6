#!/usr/bin/env python3
"""Single-node ONNX files, one depthwise convolution + ReLU6 each, at the shapes EfficientNet-
Lite0 runs at batch 1 — to time one kernel on its own, beside ONNX Runtime's:

    tools/pyenv.sh python tools/depthwise_cases.py target/dw
    GRAFT_PROFILE=nodes target/release/graft bench target/dw/dw144_56_3s1.onnx --batch 1 \\
        --iterations 1000 --device cpu            # the Conv_0 row: that node's seconds
    tools/pyenv.sh python tools/ort_profile.py target/dw/dw144_56_3s1.onnx --batch 1 \\
        --nodes --runs 1000                       # the z_nchwc row (the reorders apart)

(`graft bench`'s median per pass also counts reading the whole output back, which a network's
1000 logits do not; compare nodes.) Names: dw<channels>_<side>_<k>s<stride>.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (channels, input side, kernel, stride): Lite0's blocks 0, 2, 3, 4, 5, 6, 9 and 12.
CASES = [(32, 112, 3, 1), (144, 56, 3, 1), (144, 56, 5, 2), (240, 28, 5, 1), (240, 28, 3, 2),
         (480, 14, 3, 1), (672, 14, 5, 1), (1152, 7, 5, 1)]


def write(folder, c, side, k, s):
    rng = np.random.default_rng(0)
    pad = k // 2
    out = (side + 2 * pad - k) // s + 1
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y"], group=c, kernel_shape=[k, k],
                         strides=[s, s], pads=[pad] * 4),
        helper.make_node("Clip", ["y", "lo", "hi"], ["z"]),
    ]
    inits = [
        numpy_helper.from_array((rng.standard_normal((c, 1, k, k)) * 0.1).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(c, np.float32), "b"),
        numpy_helper.from_array(np.array(0, np.float32), "lo"),
        numpy_helper.from_array(np.array(6, np.float32), "hi"),
    ]
    name = f"dw{c}_{side}_{k}s{s}"
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, side, side])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", c, out, out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, os.path.join(folder, name + ".onnx"))
    return name


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "target/dw"
    os.makedirs(folder, exist_ok=True)
    for case in CASES:
        print(os.path.join(folder, write(folder, *case) + ".onnx"))


if __name__ == "__main__":
    main()
