#!/usr/bin/env python3
"""Multiply-adds per image of an ONNX network's convolutions, by kind (1x1, depthwise, other
grouped, other): each Conv's output shape from ONNX Runtime (one zero image at 224x224; shape
inference stops at some exporters' Pads) times its weights' dims. For the arithmetic floor of
a training step (docs/BENCHMARKS.md, fifty-sixth stop).

    tools/torchenv.sh python tools/conv_macs.py assets/efficientnet_lite0.onnx
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort

model = onnx.load(sys.argv[1])
graph = model.graph
dims = {i.name: list(i.dims) for i in graph.initializer}
convs = [n for n in graph.node if n.op_type == "Conv"]
del graph.output[:]
for n in convs:
    graph.output.append(onnx.helper.make_empty_tensor_value_info(n.output[0]))
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
outputs = session.run(None, {graph.input[0].name: np.zeros((1, 3, 224, 224), np.float32)})
totals = {}
for node, out in zip(convs, outputs):
    co, ci_per_group, kh, kw = dims[node.input[1]]
    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    if groups > 1:
        kind = "depthwise" if ci_per_group == 1 else "grouped"
    else:
        kind = "1x1" if (kh, kw) == (1, 1) else "other"
    totals[kind] = totals.get(kind, 0) + co * ci_per_group * kh * kw * out.shape[2] * out.shape[3]
for kind, macs in totals.items():
    print(f"{kind}: {macs / 1e6:.1f} M multiply-adds an image")
