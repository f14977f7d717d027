"""Model zoo: every architecture as a BlockNet, looked up by name.

The builders of torchvision-based models import torchvision when they run, not at import: its ops
pull in torch._dynamo, about 1.2 s of the 1.3 s it takes to load. A process that trains or counts
FLOPs loads torch._dynamo anyway (torch.optim and FlopCounterMode do), so this spares the ones that
do neither, such as a CLI call that stops at a user error (6.3 s -> 3.5 s).
"""

from __future__ import annotations

from collections.abc import Callable

from trainables.errors import UserError

from .blocknet import BlockNet
from .densenet import densenet
from .resnet import resnet18, resnext
from .seed_cnn import seed_cnn
from .vgg import vgg11, vgg11_bn, vgg16, vgg16_bn

ModelBuilder = Callable[[int, float], BlockNet]

MODELS: dict[str, ModelBuilder] = {
    "seed_cnn": seed_cnn,
    "vgg11": vgg11,
    "vgg11_bn": vgg11_bn,
    "vgg16": vgg16,
    "vgg16_bn": vgg16_bn,
    "resnet18": resnet18,
    "resnext": resnext,
    "densenet": densenet,
}


def model_names() -> list[str]:
    """Registry names, sorted."""
    return sorted(MODELS)


def build_model(name: str, num_classes: int, width: float = 1.0) -> BlockNet:
    """Build registry model `name` with `num_classes` outputs and channel-width multiplier
    `width`."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    if not width > 0:
        raise UserError(f"width must be > 0, got {width!r}")
    if num_classes < 2:
        raise UserError(f"num_classes must be >= 2, got {num_classes!r}")
    return MODELS[name](num_classes, width)


__all__ = ["BlockNet", "MODELS", "ModelBuilder", "build_model", "model_names"]
