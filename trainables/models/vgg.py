"""VGG-11/16 (optionally with BatchNorm) for 32x32 input, one conv layer per block."""

from __future__ import annotations

from torch import nn

from .blocknet import BlockNet
from .common import scaled


def _vgg(cfg_key: str, batch_norm: bool, num_classes: int, width: float, name: str) -> BlockNet:
    """One block per conv3x3(-BN)-ReLU of torchvision's `cfgs[cfg_key]`; each 'M' is folded into
    the block before it."""
    # imported on use, as torchvision loads slowly (trainables/models/__init__.py)
    from torchvision.models.vgg import cfgs

    cfg = cfgs[cfg_key]
    blocks: list[nn.Sequential] = []
    c_in = 3
    for v in cfg:
        if v == "M":
            if not blocks:
                raise ValueError(f"VGG config {cfg_key!r} starts with a max-pool")
            blocks[-1].append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        c_out = scaled(int(v), width)
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        blocks.append(nn.Sequential(*layers))
        c_in = c_out
    # Five 2x2 pools take 32x32 down to 1x1, so the final map has c_in features.
    head = nn.Sequential(nn.Flatten(), nn.Linear(c_in, num_classes))
    model = BlockNet(nn.ModuleList(blocks), head, name=name)
    _init_like_torchvision(model)
    return model


def _init_like_torchvision(model: nn.Module) -> None:
    """torchvision's VGG init (also eugenium/layerCNN's): Kaiming-normal convs (fan_out, ReLU), zero
    biases, Linear N(0, 0.01); BN keeps torch's 1/0. PyTorch's default init shrinks the signal about
    2x per block (measured, vgg11 at width 0.5 on N(0, 1) input: RMS 0.73 after block 0, 0.01 after
    block 6, below the biases), which leaves greedy's later blocks nothing to learn from
    (docs/greedy.md)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def vgg11(num_classes: int, width: float = 1.0) -> BlockNet:
    """VGG-11 (torchvision cfg 'A') for 32x32 input; L = 8 blocks.

    Blocks (channels at width 1.0; 'P' = 2x2 max-pool folded into that block):
    conv64-P, conv128-P, conv256, conv256-P, conv512, conv512-P, conv512, conv512-P.
    Each block is conv3x3(pad 1)-ReLU. head = flatten + Linear(512*width -> num_classes).
    """
    return _vgg("A", False, num_classes, width, "vgg11")


def vgg11_bn(num_classes: int, width: float = 1.0) -> BlockNet:
    """VGG-11 with BatchNorm (cfg 'A'); L = 8 blocks, as `vgg11` but each block is
    conv3x3-BN-ReLU."""
    return _vgg("A", True, num_classes, width, "vgg11_bn")


def vgg16(num_classes: int, width: float = 1.0) -> BlockNet:
    """VGG-16 (torchvision cfg 'D') for 32x32 input; L = 13 blocks.

    Blocks (channels at width 1.0; 'P' = 2x2 max-pool folded into that block):
    conv64, conv64-P, conv128, conv128-P, conv256, conv256, conv256-P,
    conv512, conv512, conv512-P, conv512, conv512, conv512-P.
    Each block is conv3x3(pad 1)-ReLU. head = flatten + Linear(512*width -> num_classes).
    """
    return _vgg("D", False, num_classes, width, "vgg16")


def vgg16_bn(num_classes: int, width: float = 1.0) -> BlockNet:
    """VGG-16 with BatchNorm (cfg 'D'); L = 13 blocks, as `vgg16` but each block is
    conv3x3-BN-ReLU."""
    return _vgg("D", True, num_classes, width, "vgg16_bn")
