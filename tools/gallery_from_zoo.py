#!/usr/bin/env python3
"""Writes assets/gallery.ron, the gallery's catalogue, from the ONNX Model Zoo's
ONNX_HUB_MANIFEST.json (sha256, bytes, opset, input shape per file) and the facts below, read
from each model's README in the zoo (published top-1, preprocessing, licence).

    git -C <onnx/models checkout> show HEAD:ONNX_HUB_MANIFEST.json > /tmp/hub.json
    python3 tools/gallery_from_zoo.py /tmp/hub.json > assets/gallery.ron

The zoo's files left Git LFS on 2025-07-01 for Hugging Face's `onnxmodelzoo` organisation;
each entry lists the URLs Graft tries in order (neither can be reached from the machine this
was written on: the sha256 decides whether a file is the right one, wherever it came from).
"""
import json
import sys

TORCHVISION = dict(bgr=False, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize=256)
# Caffe (BVLC) conventions: BGR, 0-255 pixels minus the ImageNet mean, no scaling.
CAFFE = dict(bgr=True, mean=(123.68 / 255, 116.779 / 255, 103.939 / 255), std=(1 / 255,) * 3, resize=224)
# DenseNet-Caffe (shicai): BGR, mean subtracted, times 0.017.
DENSENET_CAFFE = dict(bgr=True, mean=(123.68 / 255, 116.78 / 255, 103.94 / 255),
                      std=(1 / (0.017 * 255),) * 3, resize=256)
# TF-Lite EfficientNet: (x - 127) / 128 on 0-255 pixels.
EDGE_TPU = dict(bgr=False, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, resize=256)

# name, title, family, zoo file, licence, published top-1 (%), preprocessing, note
FACTS = [
    ("googlenet", "GoogLeNet", "Inception", "googlenet-12.onnx", "BSD-3-Clause", 67.78, CAFFE,
     "Caffe BVLC GoogLeNet; simple and fast to iterate with"),
    ("vgg16", "VGG-16", "VGG", "vgg16-12.onnx", "Apache-2.0", 72.38, TORCHVISION,
     "MXNet Gluon export; large (528 MB) and slow, a classic baseline"),
    ("vgg19", "VGG-19", "VGG", "vgg19-7.onnx", "Apache-2.0", 73.72, TORCHVISION,
     "MXNet Gluon export; the largest file in the gallery"),
    ("squeezenet1.0", "SqueezeNet 1.0", "SqueezeNet", "squeezenet1.0-12.onnx", "Apache-2.0", 56.85,
     TORCHVISION, "5 MB, AlexNet-level accuracy; outputs N×1000×1×1"),
    ("squeezenet1.1", "SqueezeNet 1.1", "SqueezeNet", "squeezenet1.1-7.onnx", "Apache-2.0", 56.34,
     TORCHVISION, "2.4× fewer operations than 1.0 at the same accuracy"),
    ("mobilenetv2", "MobileNet-v2", "MobileNet", "mobilenetv2-12.onnx", "Apache-2.0", 69.48,
     TORCHVISION, "light: for deployment where size and speed matter"),
    ("shufflenetv2", "ShuffleNet-v2", "ShuffleNet", "shufflenet-v2-12.onnx", "BSD-3-Clause", 66.35,
     TORCHVISION, "light; channel shuffle; top-1 from the published 33.65% error"),
    ("resnet18", "ResNet-18", "ResNet", "resnet18-v1-7.onnx", "Apache-2.0", 69.93, TORCHVISION,
     "MXNet Gluon export; a good first backbone"),
    ("resnet50", "ResNet-50", "ResNet", "resnet50-v1-12.onnx", "Apache-2.0", 74.97, TORCHVISION,
     "MXNet Gluon export; accurate, moderate size"),
    ("alexnet", "AlexNet", "AlexNet", "bvlcalexnet-12.onnx", "BSD-3-Clause", 54.80, CAFFE,
     "Caffe BVLC AlexNet; 61 M parameters, mostly in its dense layers"),
    ("densenet121", "DenseNet-121", "DenseNet", "densenet-12.onnx", "MIT", 60.96, DENSENET_CAFFE,
     "Caffe2 conversion; outputs N×1000×1×1"),
    ("efficientnet-lite4", "EfficientNet-Lite4", "EfficientNet", "efficientnet-lite4-11.onnx", "MIT",
     80.4, EDGE_TPU, "TF-Lite conversion with an NHWC input; the most accurate here"),
]

def ron_floats(xs):
    return "(" + ", ".join(f"{x:.6f}" for x in xs) + ")"

def main():
    manifest = json.load(open(sys.argv[1]))
    by_file = {e["model_path"].split("/")[-1]: e for e in manifest}
    out = ["// The gallery: pretrained networks Graft offers. Written by tools/gallery_from_zoo.py",
           "// from the ONNX Model Zoo's ONNX_HUB_MANIFEST.json and each model's README; edit that.",
           "(", "    entries: ["]
    out.append("""        (
            name: "efficientnet-lite0",
            title: "EfficientNet-Lite0",
            family: "EfficientNet",
            file: "efficientnet_lite0.onnx",
            embedded: true,
            urls: [],
            sha256: "",
            bytes: 0,
            opset: 13,
            licence: "Apache-2.0",
            source: "embedded in Graft (assets/efficientnet_lite0.onnx, see its licence notice)",
            layout: NCHW,
            input: (3, 224, 224),
            preprocess: None,
            labels: "ImageNet-1k",
            top1: Some(75.1),
            note: "embedded: works offline; light and accurate",
        ),""")
    for name, title, family, file, licence, top1, pre, note in FACTS:
        e = by_file[file]
        md = e["metadata"]
        shape = md["io_ports"]["inputs"][0]["shape"]
        nhwc = shape[-1] == 3
        chw = (shape[3], shape[1], shape[2]) if nhwc else tuple(shape[1:])
        path = e["model_path"]
        stem = file[:-len(".onnx")]
        urls = [
            f"https://huggingface.co/onnxmodelzoo/{stem}/resolve/main/{file}",
            f"https://media.githubusercontent.com/media/onnx/models/main/{path}",
        ]
        crop = chw[1]
        out.append(f"""        (
            name: "{name}",
            title: "{title}",
            family: "{family}",
            file: "{file}",
            urls: [{", ".join(json.dumps(u) for u in urls)}],
            sha256: "{md["model_sha"]}",
            bytes: {md["model_bytes"]},
            opset: {e["opset_version"]},
            licence: "{licence}",
            source: "ONNX Model Zoo, {path}",
            layout: {"NHWC" if nhwc else "NCHW"},
            input: ({chw[0]}, {chw[1]}, {chw[2]}),
            preprocess: Some((
                resize: {pre["resize"] * crop // 224},
                crop: {crop},
                mean: {ron_floats(pre["mean"])},
                std: {ron_floats(pre["std"])},
                bgr: {"true" if pre["bgr"] else "false"},
            )),
            labels: "ImageNet-1k",
            top1: Some({top1}),
            note: "{note}",
        ),""")
    out += ["    ],", ")"]
    print("\n".join(out))

main()
