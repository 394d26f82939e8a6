#!/usr/bin/env python3
"""Networks written the way converters and old exporters write them, not torch.onnx.export:

- paddle.onnx (opset 11), as paddle2onnx writes MobileNetV3-style blocks: hard-swish as
  HardSigmoid × x, a squeeze-excitation block whose Reshapes bake in batch 1 ([1, C] and
  [1, C, 1, 1]) although the input's batch is free, Cast nodes, an upsampling size computed
  by Shape → Slice → Cast → Mul → Cast → Concat arithmetic feeding Resize (nearest,
  asymmetric/floor), a bilinear Resize to a non-integer size (half_pixel), MatMul + Add.
- old.onnx (opset 7), as Caffe2/MXNet-era files: Upsample with its `scales` attribute,
  BatchNormalization with the `spatial` attribute, Sum, Dropout left in, MatMul + Add.

ONNX Runtime is the reference. paddle.onnx cannot run at batch 2 in ONNX Runtime (its
Reshapes say batch 1), so its reference is each image run alone; Graft must run the batch.
Writes tests/fixtures/converters/{paddle.onnx, old.onnx, input.npy, output_paddle.npy,
output_old.npy}.

    tools/pyenv.sh python tools/make_converter_fixtures.py
"""
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                   "converters")
rng = np.random.default_rng(21)


def w(*shape, s=0.3):
    return rng.normal(0, s, shape).astype(np.float32)


def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def bn(prefix, c):
    return [init(f"{prefix}_g", 1 + w(c, s=0.1)), init(f"{prefix}_b", w(c, s=0.1)),
            init(f"{prefix}_m", w(c, s=0.1)), init(f"{prefix}_v", 0.5 + rng.random(c).astype(np.float32))]


def save(nodes, inits, name, opset, classes):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    path = os.path.join(OUT, name + ".onnx")
    onnx.save(model, path)
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


os.makedirs(OUT, exist_ok=True)
x = rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
np.save(os.path.join(OUT, "input.npy"), x)

# --- paddle2onnx style ----------------------------------------------------------------------
n = helper.make_node
inits = [init("conv1_w", w(8, 3, 3, 3)), *bn("bn1", 8),
         init("se_fc1", w(8, 4)), init("se_b1", w(4, s=0.1)), init("se_fc2", w(4, 8)),
         init("se_b2", w(8, s=0.1)),
         init("shape_1_c", np.array([1, 8], np.int64)), init("shape_1_c11", np.array([1, 8, 1, 1], np.int64)),
         init("starts", np.array([2], np.int64)), init("ends", np.array([4], np.int64)),
         init("zero", np.array([0], np.int64)), init("two_i", np.array([2], np.int64)),
         init("two_f", np.array([2.0], np.float32)),
         init("empty_roi", np.array([], np.float32)), init("empty_scales", np.array([], np.float32)),
         init("lin_sizes", np.array([1, 8, 13, 13], np.int64)),
         init("conv2_w", w(8, 8, 3, 3, s=0.15)), init("conv2_b", w(8, s=0.1)),
         init("fc_w", w(8, 5)), init("fc_b", w(5, s=0.1))]
nodes = [
    n("Conv", ["x", "conv1_w"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"),
    n("BatchNormalization", ["c1", "bn1_g", "bn1_b", "bn1_m", "bn1_v"], ["b1"], epsilon=1e-5, name="bn1"),
    # hard_swish: x * HardSigmoid(x; 1/6, 0.5)
    n("HardSigmoid", ["b1"], ["hs1"], alpha=1 / 6, beta=0.5, name="hswish1_gate"),
    n("Mul", ["b1", "hs1"], ["a1"], name="hswish1"),
    # squeeze-excitation, reshaped to batch 1
    n("GlobalAveragePool", ["a1"], ["se_p"], name="se_pool"),
    n("Reshape", ["se_p", "shape_1_c"], ["se_f"], name="se_flat"),
    n("MatMul", ["se_f", "se_fc1"], ["se_m1"], name="se_fc1"),
    n("Add", ["se_m1", "se_b1"], ["se_a1"], name="se_fc1_bias"),
    n("Relu", ["se_a1"], ["se_r"], name="se_relu"),
    n("MatMul", ["se_r", "se_fc2"], ["se_m2"], name="se_fc2"),
    n("Add", ["se_m2", "se_b2"], ["se_a2"], name="se_fc2_bias"),
    n("HardSigmoid", ["se_a2"], ["se_g"], alpha=0.2, beta=0.5, name="se_gate"),
    n("Reshape", ["se_g", "shape_1_c11"], ["se_g4"], name="se_unflat"),
    n("Mul", ["a1", "se_g4"], ["se_out"], name="se_scale"),
    n("Cast", ["se_out"], ["se_cast"], to=TensorProto.FLOAT, name="cast_float"),
    # upsample ×2, its size computed from the feature map's shape
    n("Shape", ["se_cast"], ["shp"], name="shape"),
    n("Slice", ["shp", "starts", "ends", "zero"], ["hw"], name="hw"),
    n("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT, name="hw_float"),
    n("Mul", ["hw_f", "two_f"], ["hw2_f"], name="hw_times_2"),
    n("Cast", ["hw2_f"], ["hw2"], to=TensorProto.INT64, name="hw_int"),
    n("Slice", ["shp", "zero", "two_i", "zero"], ["nc"], name="nc"),
    n("Concat", ["nc", "hw2"], ["up_sizes"], axis=0, name="up_sizes"),
    n("Resize", ["se_cast", "empty_roi", "empty_scales", "up_sizes"], ["up"], mode="nearest",
      coordinate_transformation_mode="asymmetric", nearest_mode="floor", name="upsample"),
    n("Conv", ["up", "conv2_w", "conv2_b"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv2"),
    n("Relu", ["c2"], ["r2"], name="relu2"),
    # bilinear to 13×13 (not an integer ratio), half-pixel centres
    n("Resize", ["r2", "empty_roi", "empty_scales", "lin_sizes"], ["lin"], mode="linear",
      coordinate_transformation_mode="half_pixel", name="resize_linear"),
    n("GlobalAveragePool", ["lin"], ["p"], name="pool"),
    n("Flatten", ["p"], ["f"], name="flatten"),
    n("MatMul", ["f", "fc_w"], ["m"], name="fc"),
    n("Add", ["m", "fc_b"], ["y"], name="fc_bias"),
]
sess = save(nodes, inits, "paddle", 11, 5)
y = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
np.save(os.path.join(OUT, "output_paddle.npy"), y)
print("paddle", y)

# --- Caffe2/MXNet era (opset 7) -------------------------------------------------------------
inits = [init("conv_w", w(6, 3, 3, 3)), init("conv_b", w(6, s=0.1)), *bn("bn", 6),
         init("conv2_w", w(6, 6, 1, 1)), init("fc_w", w(6, 4)), init("fc_b", w(4, s=0.1))]
nodes = [
    n("Conv", ["x", "conv_w", "conv_b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], name="conv"),
    n("BatchNormalization", ["c", "bn_g", "bn_b", "bn_m", "bn_v"], ["b"], epsilon=1e-3, spatial=1, name="bn"),
    n("Relu", ["b"], ["r"], name="relu"),
    n("Upsample", ["r"], ["u"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0], name="upsample"),
    n("Conv", ["u", "conv2_w"], ["c2"], kernel_shape=[1, 1], name="conv2"),
    n("MaxPool", ["u"], ["mp"], kernel_shape=[1, 1], name="identity_pool"),
    n("Sum", ["c2", "mp"], ["s"], name="sum"),
    n("Dropout", ["s"], ["d"], ratio=0.3, name="dropout"),
    n("GlobalAveragePool", ["d"], ["p"], name="pool"),
    n("Flatten", ["p"], ["f"], name="flatten"),
    n("MatMul", ["f", "fc_w"], ["m"], name="fc"),
    n("Add", ["m", "fc_b"], ["y"], name="fc_bias"),
]
sess = save(nodes, inits, "old", 7, 4)
y = sess.run(None, {"x": x})[0]
np.save(os.path.join(OUT, "output_old.npy"), y)
print("old", y)
