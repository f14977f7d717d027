"""One Optuna define-by-run search space per training method, looked up by method name.

`get_search_space(...)` gives OptunaSearch its `space=`, `default_point(...)` the first trial
(the method's defaults, so a search never ends below them); both skip the spec's pinned knobs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from search_spaces import greedy, layer_to_layer, standard
from search_spaces.common import ArmContext, Space, bound_space, to_flat_config
from trainables.errors import UserError

SEARCH_SPACES: dict[str, Space] = {
    "standard": standard.space,
    "layer_to_layer": layer_to_layer.space,
    "greedy": greedy.space,
}
NOTES: dict[str, str] = {"greedy": greedy.NOTE}  # what `python -m study spaces` adds under an arm
DEFAULT_POINTS: dict[str, Callable[[ArmContext], dict[str, Any]]] = {
    "standard": standard.defaults,
    "layer_to_layer": layer_to_layer.defaults,
    "greedy": greedy.defaults,
}


def arm_context(
    method: str,
    model: str,
    epochs: float,
    optimizer: str = "adamw",
    pinned: Mapping[str, Any] | None = None,
    unit: str = "flops",
    dataset: str = "digits",
) -> ArmContext:
    """The context of one (model, method) arm; unknown methods get a ValueError naming the valid
    ones."""
    if method not in SEARCH_SPACES:
        raise UserError(
            f"no search space for method {method!r}; valid methods: {', '.join(SEARCH_SPACES)}"
        )
    return ArmContext(
        model=model,
        num_blocks=num_blocks(model),
        epochs=epochs,
        optimizer=optimizer,
        pinned=dict(pinned or {}),
        method=method,
        dataset=dataset,
        unit=unit,
    )


def get_search_space(
    method: str,
    model: str,
    epochs: float,
    optimizer: str = "adamw",
    pinned: Mapping[str, Any] | None = None,
    unit: str = "flops",
    dataset: str = "digits",
) -> Callable[..., dict[str, Any]]:
    """The define-by-run function of one arm (OptunaSearch's `space=`); `pinned` knobs are not
    searched."""
    ctx = arm_context(method, model, epochs, optimizer, pinned, unit, dataset)
    return bound_space(SEARCH_SPACES[method], ctx)


def default_point(
    method: str,
    model: str,
    epochs: float,
    optimizer: str = "adamw",
    pinned: Mapping[str, Any] | None = None,
    unit: str = "flops",
    dataset: str = "digits",
) -> dict[str, Any]:
    """The method's defaults as Optuna params (OptunaSearch's `points_to_evaluate` entry), minus
    pinned knobs."""
    ctx = arm_context(method, model, epochs, optimizer, pinned, unit, dataset)
    return {k: v for k, v in DEFAULT_POINTS[method](ctx).items() if k not in ctx.pinned}


@functools.cache
def num_blocks(model: str) -> int:
    """L of a registry model (independent of width: built once at a tiny width)."""
    from trainables.models import build_model

    return build_model(model, num_classes=10, width=0.0625).num_blocks


__all__ = [
    "DEFAULT_POINTS",
    "NOTES",
    "SEARCH_SPACES",
    "ArmContext",
    "arm_context",
    "default_point",
    "get_search_space",
    "num_blocks",
    "to_flat_config",
]
