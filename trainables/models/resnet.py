"""CIFAR-style ResNet-18 and ResNeXt-29 built from torchvision residual blocks, one residual
block per block."""

from __future__ import annotations

import math

from torch import nn

from .blocknet import BlockNet
from .common import scaled


def _stem(c_out: int) -> nn.Sequential:
    """conv3x3(3 -> c_out, stride 1) - BN - ReLU, no max-pool (32x32 input)."""
    return nn.Sequential(
        nn.Conv2d(3, c_out, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    """conv1x1 + BN projection shortcut when the stride or channel count changes, else None."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )


def _head(c_in: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))


def resnet18(num_classes: int, width: float = 1.0) -> BlockNet:
    """ResNet-18 for 32x32 input; L = 9 blocks.

    0. stem: conv3x3(3->64) - BN - ReLU (stride 1, no max-pool)        -> 64x32x32
    1-2. layer1: 2 BasicBlocks, 64 channels, stride 1                   -> 64x32x32
    3-4. layer2: 2 BasicBlocks, 128 channels, first has stride 2        -> 128x16x16
    5-6. layer3: 2 BasicBlocks, 256 channels, first has stride 2        -> 256x8x8
    7-8. layer4: 2 BasicBlocks, 512 channels, first has stride 2        -> 512x4x4

    The first BasicBlock of layers 2-4 has a conv1x1+BN projection shortcut. Channel counts
    are scaled by `width`. head = AdaptiveAvgPool2d(1) + flatten + Linear(512*width -> num_classes).
    """
    # imported on use, as torchvision loads slowly (trainables/models/__init__.py)
    from torchvision.models.resnet import BasicBlock

    c = scaled(64, width)
    blocks: list[nn.Module] = [_stem(c)]
    c_in = c
    for stage, base in enumerate((64, 128, 256, 512)):
        planes = scaled(base, width)
        for i in range(2):
            stride = 2 if stage > 0 and i == 0 else 1
            blocks.append(BasicBlock(c_in, planes, stride, _downsample(c_in, planes, stride)))
            c_in = planes
    return BlockNet(blocks, _head(c_in, num_classes), name="resnet18")


def resnext(
    num_classes: int, width: float = 1.0, cardinality: int = 4, base_width: int = 16
) -> BlockNet:
    """ResNeXt-29-style network for 32x32 input; L = 10 blocks.

    0. stem: conv3x3(3->64) - BN - ReLU (stride 1, no max-pool)               -> 64x32x32
    1-3. stage 1: 3 Bottlenecks, planes 64, stride 1                           -> 256x32x32
    4-6. stage 2: 3 Bottlenecks, planes 128, first has stride 2                -> 512x16x16
    7-9. stage 3: 3 Bottlenecks, planes 256, first has stride 2                -> 1024x8x8

    Each torchvision `Bottleneck` is conv1x1 - grouped conv3x3 (groups=`cardinality`) - conv1x1 (x4
    expansion), each followed by BN, with a conv1x1+BN projection shortcut on the first block of
    every stage. Its inner width is int(planes * base_width / 64) * cardinality; with the defaults
    (cardinality 4, base_width 16) that is 4 groups of 16/32/64 channels, i.e. inner widths
    64/128/256 and outputs 256/512/1024 — a deliberately small "ResNeXt-29 (4x16d)" (about 3.2M
    params at 10 classes vs. 34M for the paper's 8x64d). `planes` and the stem scale with `width`;
    `cardinality` does not, and `base_width` is raised where needed so every group keeps at least
    one channel (so groups always divide the grouped conv's channels, at any width). head =
    AdaptiveAvgPool2d(1) + flatten + Linear(1024*width -> num_classes).
    """
    if cardinality < 1 or base_width < 1:
        raise ValueError(
            f"cardinality and base_width must be >= 1, got {cardinality} and {base_width}"
        )
    # imported on use, as torchvision loads slowly (trainables/models/__init__.py)
    from torchvision.models.resnet import Bottleneck

    c = scaled(64, width)
    blocks: list[nn.Module] = [_stem(c)]
    c_in = c
    for stage, base in enumerate((64, 128, 256)):
        planes = scaled(base, width)
        # Bottleneck's per-group width is int(planes * bw / 64); keep it >= 1.
        bw = max(base_width, math.ceil(64 / planes))
        for i in range(3):
            stride = 2 if stage > 0 and i == 0 else 1
            c_out = planes * Bottleneck.expansion
            blocks.append(
                Bottleneck(
                    c_in,
                    planes,
                    stride,
                    _downsample(c_in, c_out, stride),
                    groups=cardinality,
                    base_width=bw,
                )
            )
            c_in = c_out
    return BlockNet(blocks, _head(c_in, num_classes), name="resnext")
