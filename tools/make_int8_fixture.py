#!/usr/bin/env python3
"""A small int8 network in QDQ form, as ONNX Runtime's static quantizer writes them: int8
weights behind DequantizeLinear, activations through QuantizeLinear → DequantizeLinear pairs
(per-tensor and per-channel scales). ONNX Runtime's output is the reference, and the same
network with the weights dequantised and no activation rounding is the float reference.
Writes tests/fixtures/int8/{qdq.onnx, input.npy, output_qdq.npy, output_float.npy} (not
model.onnx: the fixture loops take float32 files with model.onnx).

    tools/pyenv.sh python tools/make_int8_fixture.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "int8")
rng = np.random.default_rng(5)
w = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
w_scale = (np.abs(w).reshape(8, -1).max(1) / 127).astype(np.float32)  # per output channel
w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
b = rng.normal(0, 0.1, (8,)).astype(np.float32)
fc = rng.normal(0, 0.5, (3, 8)).astype(np.float32)
fc_scale = np.float32(np.abs(fc).max() / 127)
fc_q = np.clip(np.round(fc / fc_scale), -127, 127).astype(np.int8)
fcb = rng.normal(0, 0.1, (3,)).astype(np.float32)
x_scale, r_scale = np.float32(4 / 127), np.float32(3 / 127)
zero = np.int8(0)
inits = [
    numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_scale, "w_scale"),
    numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
    numpy_helper.from_array(b, "b"),
    numpy_helper.from_array(fc_q, "fc_q"), numpy_helper.from_array(np.array(fc_scale), "fc_scale"),
    numpy_helper.from_array(np.array(zero), "zero"),
    numpy_helper.from_array(fcb, "fcb"),
    numpy_helper.from_array(np.array(x_scale), "x_scale"),
    numpy_helper.from_array(np.array(r_scale), "r_scale"),
]
nodes = [
    helper.make_node("QuantizeLinear", ["x", "x_scale", "zero"], ["x_q"], name="x_q"),
    helper.make_node("DequantizeLinear", ["x_q", "x_scale", "zero"], ["x_dq"], name="x_dq"),
    helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0, name="w_dq"),
    helper.make_node("Conv", ["x_dq", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
    helper.make_node("Relu", ["c"], ["r"], name="relu"),
    helper.make_node("QuantizeLinear", ["r", "r_scale", "zero"], ["r_q"], name="r_q"),
    helper.make_node("DequantizeLinear", ["r_q", "r_scale", "zero"], ["r_dq"], name="r_dq"),
    helper.make_node("GlobalAveragePool", ["r_dq"], ["p"], name="pool"),
    helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
    helper.make_node("DequantizeLinear", ["fc_q", "fc_scale", "zero"], ["fc"], name="fc_dq"),
    helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1, name="fc"),
]
graph = helper.make_graph(
    nodes, "int8_qdq_net",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, "qdq.onnx")
onnx.save(model, path)
x = rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
np.save(os.path.join(OUT, "input.npy"), x)
np.save(os.path.join(OUT, "output_qdq.npy"), ort.InferenceSession(path).run(None, {"x": x})[0])
# The float reference: dequantised weights, no activation rounding.
wd = w_q.astype(np.float32) * w_scale[:, None, None, None]
fd = fc_q.astype(np.float32) * fc_scale
fnodes = [
    helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c"], ["r"]),
    helper.make_node("GlobalAveragePool", ["r"], ["p"]),
    helper.make_node("Flatten", ["p"], ["f"]),
    helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
]
fg = helper.make_graph(fnodes, "float", graph.input, graph.output,
                       [numpy_helper.from_array(a, n) for a, n in ((wd, "w"), (b, "b"), (fd, "fc"), (fcb, "fcb"))])
fm = helper.make_model(fg, opset_imports=[helper.make_opsetid("", 13)])
fm.ir_version = 8
y = ort.InferenceSession(fm.SerializeToString()).run(None, {"x": x})[0]
np.save(os.path.join(OUT, "output_float.npy"), y)
print(np.load(os.path.join(OUT, "output_qdq.npy")), y)
