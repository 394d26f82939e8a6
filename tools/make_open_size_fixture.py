#!/usr/bin/env python3
"""A network whose file leaves the image size open (N×3×?×?), as converter exports and
detection backbones often do, with ONNX Runtime's output at 32×32 as the reference. Writes
tests/fixtures/open_size/{open.onnx, input32.npy, output32.npy} (not model.onnx: the fixture
loops assume a fixed size).

    tools/pyenv.sh python tools/make_open_size_fixture.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "open_size")
rng = np.random.default_rng(3)
w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
b = rng.normal(0, 0.1, (4,)).astype(np.float32)
fc = rng.normal(0, 0.5, (2, 4)).astype(np.float32)
fcb = rng.normal(0, 0.1, (2,)).astype(np.float32)
nodes = [
    helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
    helper.make_node("Relu", ["c"], ["r"]),
    helper.make_node("GlobalAveragePool", ["r"], ["p"]),
    helper.make_node("Flatten", ["p"], ["f"]),
    helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
]
graph = helper.make_graph(
    nodes, "open_size",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fcb, "fcb"))],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, "open.onnx")
onnx.save(model, path)
x = rng.normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
np.save(os.path.join(OUT, "input32.npy"), x)
np.save(os.path.join(OUT, "output32.npy"), ort.InferenceSession(path).run(None, {"x": x})[0])
