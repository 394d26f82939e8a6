#!/usr/bin/env python3
"""A small int8 network in QOperator form, as ONNX Runtime's quantizer writes it with
QuantFormat.QOperator: QLinearConv, QLinearMatMul, and ONNX Runtime's `com.microsoft`
QLinearAdd, QLinearConcat, QLinearAveragePool, QLinearGlobalAveragePool, QLinearLeakyRelu and
QGemm reading and writing uint8 values, int8 weights (per channel and per tensor), int32
biases, MaxPool and Flatten applied to the uint8 values directly. As the quantizer does, the
Relu after a convolution is folded into its output's zero point (uint8, zero point 0: nothing
below 0 is representable).

ONNX Runtime's run of this file is the int8 reference; the float reference is the same network
with the weights dequantised, the Relus written out and no activation rounding, also run by
ONNX Runtime. Writes tests/fixtures/int8/{qoperator.onnx, output_qoperator.npy,
output_qoperator_float.npy} (its input is input.npy, shared with the QDQ fixture).

    tools/pyenv.sh python tools/make_qoperator_fixture.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "int8")
rng = np.random.default_rng(11)
inits, fl_inits = [], []


def const(name, value):
    inits.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def fconst(name, value):
    fl_inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
    return name


def weight(name, shape, per_channel):
    """int8 weights with their scale (per output channel on axis 0, or one) and float copy."""
    w = rng.normal(0, 0.4, shape).astype(np.float32)
    if per_channel:
        s = (np.abs(w).reshape(shape[0], -1).max(1) / 127).astype(np.float32)
        bs = s.reshape((-1,) + (1,) * (len(shape) - 1))
    else:
        s = np.float32(np.abs(w).max() / 127)
        bs = s
    q = np.clip(np.round(w / bs), -127, 127).astype(np.int8)
    const(name + "_q", q)
    const(name + "_scale", s)
    const(name + "_zero", np.zeros_like(s, dtype=np.int8) if per_channel else np.int8(0))
    fconst(name, q.astype(np.float32) * bs)
    return s


def bias(name, n, x_scale, w_scale):
    """int32 bias at scale x_scale * w_scale, as QLinearConv/QGemm take it, and float copy."""
    b = rng.normal(0, 0.1, (n,)).astype(np.float32)
    step = (x_scale * np.broadcast_to(w_scale, (n,))).astype(np.float32)
    q = np.round(b / step).astype(np.int32)
    const(name + "_q", q)
    fconst(name, q.astype(np.float32) * step)


def act(name, scale, zero):
    """A uint8 activation's scale and zero point."""
    const(name + "_s", np.float32(scale))
    const(name + "_z", np.uint8(zero))
    return [name + "_s", name + "_z"]


q = lambda *a: list(a)  # noqa: E731 (inputs, spelled out for reading)
xs = 6 / 255
x_sz = act("x", xs, 128)
c1 = act("c1", 8 / 255, 0)  # Relu folded in: zero point 0
ws1 = weight("w1", (8, 3, 3, 3), per_channel=True)
bias("b1", 8, xs, ws1)
c2 = act("c2", 8 / 255, 0)
ws2 = weight("w2", (8, 8, 1, 1), per_channel=False)
bias("b2", 8, 8 / 255, ws2)
s_add = act("add", 12 / 255, 0)
s_cat = act("cat", 12 / 255, 0)
s_lr = act("lrelu", 12 / 255, 40)
s_ap = act("ap", 12 / 255, 40)
s_gp = act("gp", 12 / 255, 40)
ws3 = weight("fc1", (16, 10), per_channel=False)  # MatMul: K×N
s_mm = act("mm", 10 / 255, 0)
ws4 = weight("fc2", (3, 10), per_channel=True)  # QGemm transB: N×K, per output channel
bias("b4", 3, 10 / 255, ws4)

ms = "com.microsoft"
nodes = [
    helper.make_node("QuantizeLinear", ["x", *x_sz], ["x_q"], name="x_q"),
    helper.make_node("QLinearConv", ["x_q", *x_sz, "w1_q", "w1_scale", "w1_zero", *c1, "b1_q"],
                     ["c1_q"], pads=[1, 1, 1, 1], name="conv1"),
    helper.make_node("MaxPool", ["c1_q"], ["m_q"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
    helper.make_node("QLinearConv", ["m_q", *c1, "w2_q", "w2_scale", "w2_zero", *c2, "b2_q"],
                     ["c2_q"], name="conv2"),
    helper.make_node("QLinearAdd", ["m_q", *c1, "c2_q", *c2, *s_add], ["a_q"], domain=ms, name="add"),
    helper.make_node("QLinearConcat", [*s_cat, "a_q", *s_add, "c2_q", *c2], ["cat_q"], axis=1,
                     domain=ms, name="concat"),
    helper.make_node("QLinearLeakyRelu", ["cat_q", *s_cat, *s_lr], ["lr_q"], alpha=0.1, domain=ms,
                     name="lrelu"),
    helper.make_node("QLinearAveragePool", ["lr_q", *s_lr, *s_ap], ["ap_q"], kernel_shape=[2, 2],
                     strides=[2, 2], domain=ms, name="avgpool"),
    helper.make_node("QLinearGlobalAveragePool", ["ap_q", *s_ap, *s_gp], ["gp_q"], channels_last=0,
                     domain=ms, name="gap"),
    helper.make_node("Flatten", ["gp_q"], ["f_q"], name="flatten"),
    helper.make_node("QLinearMatMul", ["f_q", *s_gp, "fc1_q", "fc1_scale", "fc1_zero", *s_mm],
                     ["mm_q"], name="fc1"),
    helper.make_node("QGemm", ["mm_q", *s_mm, "fc2_q", "fc2_scale", "fc2_zero", "b4_q"], ["logits"],
                     transB=1, domain=ms, name="fc2"),
]
graph = helper.make_graph(
    nodes, "int8_qoperator_net",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(ms, 1)])
model.ir_version = 8
os.makedirs(OUT, exist_ok=True)
path = os.path.join(OUT, "qoperator.onnx")
onnx.save(model, path)
x = np.load(os.path.join(OUT, "input.npy"))
y_q = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
np.save(os.path.join(OUT, "output_qoperator.npy"), y_q)

# The float reference: dequantised weights, the folded Relus written out, no rounding.
fnodes = [
    helper.make_node("Conv", ["x", "w1", "b1"], ["c1r"], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c1r"], ["c1"]),
    helper.make_node("MaxPool", ["c1"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Conv", ["m", "w2", "b2"], ["c2r"]),
    helper.make_node("Relu", ["c2r"], ["c2"]),
    helper.make_node("Add", ["m", "c2"], ["a"]),
    helper.make_node("Concat", ["a", "c2"], ["cat"], axis=1),
    helper.make_node("LeakyRelu", ["cat"], ["lr"], alpha=0.1),
    helper.make_node("AveragePool", ["lr"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("GlobalAveragePool", ["ap"], ["gp"]),
    helper.make_node("Flatten", ["gp"], ["f"]),
    helper.make_node("MatMul", ["f", "fc1"], ["mmr"]),
    helper.make_node("Relu", ["mmr"], ["mm"]),
    helper.make_node("Gemm", ["mm", "fc2", "b4"], ["logits"], transB=1),
]
fg = helper.make_graph(fnodes, "float", graph.input, graph.output, fl_inits)
fm = helper.make_model(fg, opset_imports=[helper.make_opsetid("", 13)])
fm.ir_version = 8
onnx.checker.check_model(fm)
y = ort.InferenceSession(fm.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
np.save(os.path.join(OUT, "output_qoperator_float.npy"), y)
print("int8:", y_q[0], "\nfloat:", y[0], "\nmax rel diff:", np.abs(y_q - y).max() / np.abs(y).max())
