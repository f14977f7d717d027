"""Search space of `standard`: only the shared optimiser knobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import ArmContext, shared_defaults, shared_space

if TYPE_CHECKING:
    import optuna


def space(trial: optuna.Trial, ctx: ArmContext) -> dict[str, Any]:
    """lr, weight_decay, batch_size (see `search_spaces.common.shared_space`)."""
    return shared_space(trial, ctx)


def defaults(ctx: ArmContext) -> dict[str, Any]:
    """The first trial: TrainConfig's defaults."""
    return shared_defaults(ctx)
