"""The seed paper's small CIFAR CNN (4 convs + 1 hidden fc layer) as a BlockNet."""

from __future__ import annotations

from torch import nn

from .blocknet import BlockNet
from .common import scaled


def _conv_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]


def seed_cnn(num_classes: int, width: float = 1.0) -> BlockNet:
    """Build the seed paper's CNN for 3x32x32 input.

    L = 5 blocks (3x3 convs, padding 1; every count below is scaled by `width`):

    0. conv(3->32) - ReLU                                  -> 32x32x32
    1. conv(32->32) - ReLU - maxpool2 - dropout(0.25)     -> 32x16x16
    2. conv(32->64) - ReLU                                 -> 64x16x16
    3. conv(64->64) - ReLU - maxpool2 - dropout(0.25)     -> 64x8x8
    4. flatten - fc(64*8*8 -> 512) - ReLU - dropout(0.5)  -> 512

    head = Linear(512, num_classes). At width 1.0 and 10 classes this has
    896 + 9248 + 18496 + 36928 + 2097664 + 5130 = 2,168,362 parameters.
    """
    c1, c2, hidden = scaled(32, width), scaled(64, width), scaled(512, width)
    blocks: list[nn.Module] = [
        nn.Sequential(*_conv_relu(3, c1)),
        nn.Sequential(*_conv_relu(c1, c1), nn.MaxPool2d(2), nn.Dropout(0.25)),
        nn.Sequential(*_conv_relu(c1, c2)),
        nn.Sequential(*_conv_relu(c2, c2), nn.MaxPool2d(2), nn.Dropout(0.25)),
        nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 8 * 8, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5)
        ),
    ]
    return BlockNet(blocks, nn.Linear(hidden, num_classes), name="seed_cnn")
