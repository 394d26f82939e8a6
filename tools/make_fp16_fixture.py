#!/usr/bin/env python3
"""A small float16 network (float16 input, weights and output), as converters and
`onnxconverter_common.float16` write them, with ONNX Runtime's output as the reference.
Writes tests/fixtures/fp16/{fp16.onnx, input.f32.npy, output_ort.npy} (the input stored as
float32 holding float16 values; not model.onnx: the fixture loops expect float32 files).

    tools/pyenv.sh python tools/make_fp16_fixture.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "fp16")
rng = np.random.default_rng(11)
h = np.float16
w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(h)
b = rng.normal(0, 0.1, (4,)).astype(h)
fc = rng.normal(0, 0.5, (3, 4)).astype(h)
fcb = rng.normal(0, 0.1, (3,)).astype(h)
nodes = [
    helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
    helper.make_node("Relu", ["c"], ["r"], name="relu"),
    helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
    helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
    helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1, name="fc"),
]
graph = helper.make_graph(
    nodes, "fp16_net",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3, 16, 16])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, ["N", 3])],
    [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fcb, "fcb"))],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, "fp16.onnx")
onnx.save(model, path)
x = rng.normal(0, 1, (2, 3, 16, 16)).astype(h)
y = ort.InferenceSession(path).run(None, {"x": x})[0]
np.save(os.path.join(OUT, "input.f32.npy"), x.astype(np.float32))
np.save(os.path.join(OUT, "output_ort.npy"), y.astype(np.float32))
print(y)
