"""Small DenseNet-BC for 32x32 input built from torchvision's dense blocks and transitions."""

from __future__ import annotations

from torch import nn

from .blocknet import BlockNet
from .common import scaled


def densenet(
    num_classes: int, width: float = 1.0, layers_per_block: int = 6, bn_size: int = 4
) -> BlockNet:
    """DenseNet-BC (growth rate 12, 3 dense blocks of 6 bottleneck layers, compression 0.5); L = 4
    blocks.

    With growth rate k = scaled(12, width) (channel counts below are for width 1.0, k = 12):

    0. stem: conv3x3(3 -> 2k), no BN/ReLU                                    -> 24x32x32
    1. dense block 1 (6 BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k) layers)
       + transition 1 (BN-ReLU-conv1x1 to half the channels - avgpool2)     -> 48x16x16
    2. dense block 2 + transition 2                                          -> 60x8x8
    3. dense block 3 + BN + ReLU                                             -> 132x8x8

    head = AdaptiveAvgPool2d(1) + flatten + Linear(132 -> num_classes).
    """
    # imported on use, as torchvision loads slowly (trainables/models/__init__.py)
    from torchvision.models.densenet import _DenseBlock, _Transition

    k = scaled(12, width)
    c = 2 * k
    blocks: list[nn.Module] = [nn.Conv2d(3, c, kernel_size=3, padding=1, bias=False)]
    for i in range(3):
        dense = _DenseBlock(layers_per_block, c, bn_size=bn_size, growth_rate=k, drop_rate=0.0)
        c += layers_per_block * k
        if i < 2:
            c_out = c // 2
            blocks.append(nn.Sequential(dense, _Transition(c, c_out)))
            c = c_out
        else:
            blocks.append(nn.Sequential(dense, nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
    return BlockNet(blocks, head, name="densenet")
