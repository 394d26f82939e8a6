#!/usr/bin/env python3
"""Make the committed parity fixtures under tests/fixtures/.

Each fixture is a small variant of an architecture from the transfer-learning literature
(widths and depths reduced, 10 classes, every op pattern kept) exported by torch.onnx.export,
with a seeded input and PyTorch's output saved as .npy. ONNX Runtime must agree with PyTorch
before a fixture is written, so the reference is the answer both runtimes give.

    tools/pyenv.sh python tools/make_fixtures.py            # all fixtures
    tools/pyenv.sh python tools/make_fixtures.py resnet18   # just some

Weights are random (seeded) and BatchNorm statistics are randomised so that folding BatchNorm
into Conv, and running it as its own node, are both really tested.
"""
import json, os, sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
import torchvision.models as tvm
from torchvision.models import convnext, densenet, efficientnet, mobilenetv3, regnet, resnet
from torchvision.models.googlenet import GoogLeNet, Inception, BasicConv2d
from torchvision.models.vgg import VGG, make_layers

sys.path.insert(0, os.path.dirname(__file__))
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
EVAL, KEEP = torch.onnx.TrainingMode.EVAL, torch.onnx.TrainingMode.PRESERVE


class SmallResNet(resnet.ResNet):
    """torchvision's ResNet with base width `w` instead of 64 (same module names)."""

    def __init__(self, block, layers, w=8, num_classes=10):
        nn.Module.__init__(self)
        self._norm_layer, self.inplanes, self.dilation = nn.BatchNorm2d, w, 1
        self.groups, self.base_width = 1, 64
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, w, layers[0])
        self.layer2 = self._make_layer(block, 2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * w, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w * block.expansion, num_classes)


def small_vgg(cfg_name, div=16):
    cfg = {"D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
           "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                 512, 512, 512, 512, "M"]}[cfg_name]
    cfg = [c if c == "M" else c // div for c in cfg]
    m = VGG(make_layers(cfg), num_classes=10, init_weights=True)
    last = 512 // div
    # Same layer sequence as torchvision's classifier, narrower.
    m.classifier = nn.Sequential(nn.Linear(last * 7 * 7, 64), nn.ReLU(True), nn.Dropout(),
                                 nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
    return m


def small_alexnet():
    m = tvm.AlexNet(num_classes=10)
    m.features = nn.Sequential(
        nn.Conv2d(3, 16, 11, 4, 2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(16, 24, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
        nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(True),
        nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
    m.classifier = nn.Sequential(nn.Dropout(), nn.Linear(16 * 6 * 6, 64), nn.ReLU(True),
                                 nn.Dropout(), nn.Linear(64, 64), nn.ReLU(True), nn.Linear(64, 10))
    return m


def small_googlenet(d=8):
    """torchvision's GoogLeNet (module names kept) with every width divided by `d`."""
    m = GoogLeNet(num_classes=10, aux_logits=False, transform_input=False, init_weights=True)
    c = lambda *xs: [max(1, x // d) for x in xs]  # noqa: E731
    m.conv1 = BasicConv2d(3, *c(64), kernel_size=7, stride=2, padding=3)
    m.conv2 = BasicConv2d(*c(64, 64), kernel_size=1)
    m.conv3 = BasicConv2d(*c(64, 192), kernel_size=3, padding=1)
    specs = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
             "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
             "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
             "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
             "5b": (832, 384, 192, 384, 48, 128, 128)}
    for k, s in specs.items():
        setattr(m, "inception" + k, Inception(*c(*s)))
    m.fc = nn.Linear(1024 // d, 10)
    return m


class Darknet(nn.Module):
    """A darknet/YOLO-style backbone: Conv+BN+LeakyRelu(0.1), maxpool, a route (concat) and
    a shortcut (add), classified by a 1x1 conv and global pool."""

    def __init__(self):
        super().__init__()

        def cbl(i, o, k=3, s=1):
            return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o),
                                 nn.LeakyReLU(0.1))
        self.c1, self.p1 = cbl(3, 8), nn.MaxPool2d(2, 2)
        self.c2, self.c3 = cbl(8, 16, 3, 2), cbl(16, 8, 1)
        self.c4 = cbl(8, 16)
        self.c5 = cbl(32, 32, 3, 2)
        self.cls = nn.Conv2d(32, 10, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.p1(self.c1(x))
        a = self.c2(x)
        b = self.c4(self.c3(a)) + a  # shortcut
        x = self.c5(torch.cat([a, b], 1))  # route
        return torch.flatten(self.pool(self.cls(x)), 1)


def small_efficientnet_b0():
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.34)
    return efficientnet.EfficientNet(setting, 0.2, num_classes=10, last_channel=last)


def small_mobilenet_v3():
    setting, last = mobilenetv3._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    return mobilenetv3.MobileNetV3(setting, 64, num_classes=10)


def small_regnet(se=None):
    bp = regnet.BlockParams.from_init_params(depth=5, w_0=16, w_a=8.0, w_m=2.0, group_width=8,
                                             se_ratio=se)
    return regnet.RegNet(bp, num_classes=10, stem_width=8)


def small_convnext():
    cfg = [convnext.CNBlockConfig(8, 16, 1), convnext.CNBlockConfig(16, 32, 1),
           convnext.CNBlockConfig(32, 48, 2), convnext.CNBlockConfig(48, None, 1)]
    return convnext.ConvNeXt(cfg, num_classes=10, layer_scale=0.5)


def small_densenet():
    return densenet.DenseNet(growth_rate=8, block_config=(2, 3, 4, 3), num_init_features=16,
                             bn_size=2, num_classes=10)


def small_lite0():
    return EfficientNetLite0(num_classes=10, size=64, width=0.25)


# name: (constructor, input size, opset, BatchNorm handling)
FIXTURES = {
    "squeezenet1_0_op11": (lambda: tvm.squeezenet1_0(num_classes=10), 64, 11, EVAL),
    "squeezenet1_1_op13": (lambda: tvm.squeezenet1_1(num_classes=10), 64, 13, EVAL),
    "mobilenet_v2_op10": (lambda: tvm.mobilenet_v2(width_mult=0.25, num_classes=10), 64, 10, EVAL),
    "mobilenet_v2_bn_op12": (lambda: tvm.mobilenet_v2(width_mult=0.25, num_classes=10), 64, 12, KEEP),
    "mobilenet_v3_op13": (small_mobilenet_v3, 64, 13, EVAL),
    "mobilenet_v3_op17": (small_mobilenet_v3, 64, 17, KEEP),
    "shufflenet_v2_op11": (lambda: tvm.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=10), 64, 11, EVAL),
    "shufflenet_v2_bn_op13": (lambda: tvm.ShuffleNetV2([2, 2, 2], [8, 16, 32, 64, 128], num_classes=10), 64, 13, KEEP),
    "resnet18_op13": (lambda: SmallResNet(resnet.BasicBlock, [2, 2, 2, 2]), 64, 13, EVAL),
    "resnet18_bn_op14": (lambda: SmallResNet(resnet.BasicBlock, [2, 2, 2, 2]), 64, 14, KEEP),
    "resnet50_op17": (lambda: SmallResNet(resnet.Bottleneck, [3, 4, 6, 3], w=4), 64, 17, EVAL),
    "vgg16_op13": (lambda: small_vgg("D"), 224, 13, EVAL),
    "vgg19_op15": (lambda: small_vgg("E"), 224, 15, EVAL),
    "alexnet_op14": (small_alexnet, 224, 14, EVAL),
    "googlenet_op11": (small_googlenet, 64, 11, EVAL),
    "densenet121_op13": (small_densenet, 64, 13, KEEP),
    "efficientnet_b0_op16": (small_efficientnet_b0, 64, 16, EVAL),
    "efficientnet_lite0_op13": (small_lite0, 64, 13, KEEP),
    "mnasnet_op12": (lambda: tvm.MNASNet(0.25, num_classes=10), 64, 12, EVAL),
    "regnet_x_op17": (small_regnet, 64, 17, EVAL),
    "regnet_y_bn_op15": (lambda: small_regnet(0.25), 64, 15, KEEP),
    "darknet_op13": (Darknet, 64, 13, EVAL),
    "convnext_op13": (small_convnext, 64, 13, EVAL),
    "convnext_op17": (small_convnext, 64, 17, EVAL),
}


def caffenet_lrn(path, opset=11):
    """A Caffe-style AlexNet stem as Caffe converters write it, with real LRN nodes (PyTorch
    exports LocalResponseNorm decomposed, so this one is written with onnx.helper). Its
    reference output comes from ONNX Runtime."""
    from onnx import helper, numpy_helper, TensorProto
    rng = np.random.default_rng(3)
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.2).astype(np.float32))  # noqa: E731
    inits = []
    for name, arr in [("conv1_w", w(8, 3, 7, 7)), ("conv1_b", w(8)), ("conv2_w", w(16, 4, 3, 3)),
                      ("conv2_b", w(16)), ("fc_w", w(10, 16 * 3 * 3)), ("fc_b", w(10))]:
        arr.name = name
        inits.append(arr)
    nodes = [
        helper.make_node("Conv", ["data", "conv1_w", "conv1_b"], ["c1"], name="conv1", strides=[2, 2], pads=[3, 3, 3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("LRN", ["r1"], ["n1"], name="norm1", size=5, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("MaxPool", ["n1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], name="conv2", group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("LRN", ["r2"], ["n2"], name="norm2", size=3, alpha=2e-2, beta=0.5, bias=2.0),
        helper.make_node("MaxPool", ["n2"], ["p2"], name="pool2", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=1),
    ]
    graph = helper.make_graph(nodes, "caffenet_lrn",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="caffe2onnx-style")
    onnx.checker.check_model(model)
    onnx.save(model, path)


def make_handwritten(name, build, size, opset):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    build(path, opset)
    x = np.random.default_rng(4).standard_normal((2, 3, size, size)).astype(np.float32)
    y = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"data": x})[0]
    np.save(os.path.join(d, "input.npy"), x)
    np.save(os.path.join(d, "output.npy"), y)
    proto = onnx.load(path)
    ops = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"opset": opset, "input": [2, 3, size, size], "batchnorm": "none", "nodes": len(proto.graph.node),
            "ops": dict(sorted(ops.items())), "bytes": os.path.getsize(path), "reference": "onnxruntime"}


HANDWRITTEN = {"caffenet_lrn_op11": (caffenet_lrn, 32, 11)}


def randomise_batchnorm(model, gen):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)


def make(name, build, size, opset, bn):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = build().eval()
    with torch.no_grad():
        randomise_batchnorm(model, gen)
    x = torch.randn(2, 3, size, size, generator=gen)
    with torch.no_grad():
        y = model(x).numpy()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      training=bn, do_constant_folding=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {"input": x.numpy()})[0]
    err = float(np.abs(y_ort - y).max() / max(1.0, np.abs(y).max()))
    assert err < 1e-4, f"{name}: ONNX Runtime differs from PyTorch by {err}"
    np.save(os.path.join(d, "input.npy"), x.numpy())
    np.save(os.path.join(d, "output.npy"), y)
    proto = onnx.load(path)
    ops = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"opset": opset, "input": [2, 3, size, size], "batchnorm": "kept" if bn == KEEP else "folded",
            "nodes": len(proto.graph.node), "ops": dict(sorted(ops.items())),
            "bytes": os.path.getsize(path), "ort_vs_torch": err}


def main():
    names = sys.argv[1:] or list(FIXTURES) + list(HANDWRITTEN)
    manifest_path = os.path.join(OUT, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
    for name in names:
        if name in HANDWRITTEN:
            manifest[name] = make_handwritten(name, *HANDWRITTEN[name])
            print(f"{name}: {manifest[name]['nodes']} nodes (ONNX Runtime reference)")
            continue
        manifest[name] = make(name, *FIXTURES[name])
        print(f"{name}: {manifest[name]['nodes']} nodes, {manifest[name]['bytes'] / 1e6:.2f} MB, "
              f"ort-vs-torch {manifest[name]['ort_vs_torch']:.1e}")
    with open(manifest_path, "w") as f:
        json.dump(dict(sorted(manifest.items())), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
