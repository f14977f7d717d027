"""The training methods by name, and `build_method`, the one way to make one for a config."""

from __future__ import annotations

import torch

from trainables.config import TrainConfig
from trainables.errors import UserError
from trainables.methods.base import Method, MethodParams, Stage
from trainables.methods.greedy import Greedy
from trainables.methods.layer_to_layer import LayerToLayer
from trainables.methods.standard import Standard
from trainables.models import BlockNet

METHODS: dict[str, type[Method]] = {
    "standard": Standard,
    "layer_to_layer": LayerToLayer,
    "greedy": Greedy,
}
METHOD_NAMES = tuple(METHODS)


def get_method(name: str) -> type[Method]:
    """The Method class registered as `name` (its Params and class-level facts); an unknown name
    is a UserError listing the valid ones."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; valid methods: {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def build_method(
    config: TrainConfig,
    model: BlockNet,
    num_classes: int,
    device: torch.device,
    steps_per_epoch: int,
    stage_epochs: list[int] | None = None,
) -> Method:
    """The method `config` names around `model`, as the variant its knobs select (greedy's:
    sequential, decoupled or auto_depth); `stage_epochs` as a run plan gave them, else the method
    plans itself when asked."""
    method = get_method(config.method)
    variant = method.variant(method.Params.from_dict(config.params, config.method))
    return variant(config, model, num_classes, device, steps_per_epoch, stage_epochs)


__all__ = [
    "METHOD_NAMES",
    "Method",
    "MethodParams",
    "Stage",
    "build_method",
    "get_method",
]
