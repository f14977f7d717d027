"""Registry of training methods: name -> Method class (imported on first use)."""

from __future__ import annotations

import importlib

from trainables.errors import UserError
from trainables.methods.base import Method, MethodParams, Stage

_METHOD_PATHS = {
    "standard": "trainables.methods.standard:Standard",
    "layer_to_layer": "trainables.methods.layer_to_layer:LayerToLayer",
    "greedy": "trainables.methods.greedy:Greedy",
}
METHOD_NAMES = tuple(_METHOD_PATHS)


def get_method(name: str) -> type[Method]:
    """The Method class registered as `name`; unknown names get a ValueError listing the valid ones."""
    if name not in _METHOD_PATHS:
        raise UserError(f"unknown method {name!r}; valid methods: {', '.join(METHOD_NAMES)}")
    module_name, class_name = _METHOD_PATHS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["METHOD_NAMES", "Method", "MethodParams", "Stage", "get_method"]
