#!/usr/bin/env python3
"""ONNX Runtime's log-mel spectrogram of a synthesised clip, for Graft's audio front end
(src/audio/mel.rs) to match: the ops the exported file will hold (opset 17 STFT with a
periodic Hann window, power, MatMul by the mel filter bank, log).

The filter bank is the ONNX specification's MelWeightMatrix (its reference implementation,
written out below) and goes into the graph as a constant: ONNX Runtime's own MelWeightMatrix
kernel spaces the bands by (mel(fmax) − mel(fmin)) / (mels + 2) where the specification says
mels + 1, so a file holding the op would give different numbers in different runtimes.
Writes tests/fixtures/audio/{clip.npy, mel_weights.npy, log_mel.npy}.

    tools/pyenv.sh python tools/make_audio_references.py
"""
import os

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "audio")
RATE, FFT, HOP, MELS, FMIN, FMAX, OFFSET = 16000, 512, 160, 40, 20.0, 8000.0, 1e-6

t = np.arange(RATE // 2) / RATE  # half a second
# A rising chirp plus a steady tone and a little seeded noise.
clip = (0.5 * np.sin(2 * np.pi * (200 * t + 3000 * t * t)) + 0.2 * np.sin(2 * np.pi * 1000 * t)
        + 0.01 * np.random.default_rng(1).normal(size=t.shape)).astype(np.float32)

def mel_weight_matrix(mels, fft, rate, fmin, fmax):
    """The ONNX specification's MelWeightMatrix (onnx.reference's implementation)."""
    bins = fft // 2 + 1
    points = np.arange(0, mels + 2)
    lo, hi = 2595 * np.log10(1 + fmin / 700), 2595 * np.log10(1 + fmax / 700)
    points = 700 * (np.power(10, (points * (hi - lo) / (mels + 1) + lo) / 2595) - 1)
    points = (((fft + 1) * points) // rate).astype(int)
    out = np.zeros((bins, mels), np.float32)
    for i in range(mels):
        left, centre, right = points[i], points[i + 1], points[i + 2]
        if centre == left:
            out[centre, i] = 1
        else:
            for j in range(left, centre + 1):
                out[j, i] = (j - left) / (centre - left)
        if right > centre:
            for j in range(centre, right):
                out[j, i] = (right - j) / (right - centre)
    return out


weights = mel_weight_matrix(MELS, FFT, RATE, FMIN, FMAX)
n = helper.make_node
c = lambda name, v, ty=TensorProto.INT64: helper.make_tensor(name, ty, [], [v])  # noqa: E731
nodes = [
    n("Unsqueeze", ["clip", "axes"], ["signal"]),  # [1, samples, 1]
    n("HannWindow", ["fft"], ["window"], periodic=1, output_datatype=TensorProto.FLOAT),
    n("STFT", ["signal", "hop", "window", "fft"], ["spec"], onesided=1),  # [1, frames, bins, 2]
    n("Mul", ["spec", "spec"], ["sq"]),
    n("ReduceSum", ["sq", "last"], ["power"], keepdims=0),  # [1, frames, bins]
    n("MatMul", ["power", "weights"], ["mel"]),
    n("Add", ["mel", "offset"], ["mel_off"]),
    n("Log", ["mel_off"], ["log_mel"]),
]
inits = [helper.make_tensor("axes", TensorProto.INT64, [2], [0, 2]), c("hop", HOP), c("fft", FFT),
         helper.make_tensor("last", TensorProto.INT64, [1], [-1]),
         onnx.numpy_helper.from_array(weights, "weights"), c("offset", OFFSET, TensorProto.FLOAT)]
graph = helper.make_graph(nodes, "log_mel", [helper.make_tensor_value_info("clip", TensorProto.FLOAT, [len(clip)])],
                          [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, None)], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
(log_mel,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
    None, {"clip": clip})
os.makedirs(OUT, exist_ok=True)
np.save(os.path.join(OUT, "clip.npy"), clip)
np.save(os.path.join(OUT, "mel_weights.npy"), weights.astype(np.float32))
np.save(os.path.join(OUT, "log_mel.npy"), log_mel[0].astype(np.float32))
print(weights.shape, log_mel.shape, float(log_mel.min()), float(log_mel.max()))
