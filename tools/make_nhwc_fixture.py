#!/usr/bin/env python3
"""A small channels-last network as tf2onnx and keras2onnx write them: an N×H×W×3 input, a
Transpose to channels-first, then Conv, Relu, pooling and a dense layer. ONNX Runtime's output
is the reference. Writes tests/fixtures/nhwc/{nhwc.onnx, input_nhwc.npy, output_ort.npy}
(not model.onnx: the fixture loops expect an N×C×H×W input.npy).

    tools/pyenv.sh python tools/make_nhwc_fixture.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "nhwc")
rng = np.random.default_rng(7)
w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
b = rng.normal(0, 0.1, (4,)).astype(np.float32)
fc = rng.normal(0, 0.5, (2, 4)).astype(np.float32)
fcb = rng.normal(0, 0.1, (2,)).astype(np.float32)
nodes = [
    helper.make_node("Transpose", ["images:0"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
    helper.make_node("Conv", ["nchw", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
    helper.make_node("Relu", ["c"], ["r"], name="relu"),
    helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
    helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
    helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1, name="fc"),
]
graph = helper.make_graph(
    nodes, "nhwc_net",
    [helper.make_tensor_value_info("images:0", TensorProto.FLOAT, ["N", 16, 16, 3])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fcb, "fcb"))],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
os.makedirs(OUT, exist_ok=True)
onnx.save(model, os.path.join(OUT, "nhwc.onnx"))
x = rng.normal(0, 1, (2, 16, 16, 3)).astype(np.float32)
y = ort.InferenceSession(os.path.join(OUT, "nhwc.onnx")).run(None, {"images:0": x})[0]
np.save(os.path.join(OUT, "input_nhwc.npy"), x)
np.save(os.path.join(OUT, "output_ort.npy"), y)
print(y)
