"""The one epoch-budget allocator of the staged methods (layer_to_layer's splits, greedy's block groups)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from trainables.errors import UserError


def allocate_epochs(weights: Sequence[float], epochs: int) -> list[int]:
    """Whole epochs per stage proportional to `weights`, >= 1 each, adding up to `epochs`.

    Largest remainder: every stage first gets floor(share) (at least 1), the epochs left over go to
    the stages furthest below their share, earlier stages first on ties. A larger weight never gets
    fewer epochs.
    """
    if epochs < len(weights):
        raise UserError(
            f"epochs={epochs} is too small for {len(weights)} stages; "
            f"use at least {len(weights)} epochs (one per stage)"
        )
    total = sum(weights)
    targets = [w / total * epochs for w in weights]
    alloc = [max(1, math.floor(t)) for t in targets]
    while sum(alloc) > epochs:  # only the max(1, .) floor can overshoot
        i = max((i for i, a in enumerate(alloc) if a > 1), key=lambda i: alloc[i] - targets[i])
        alloc[i] -= 1
    while sum(alloc) < epochs:
        i = max(range(len(alloc)), key=lambda i: targets[i] - alloc[i])
        alloc[i] += 1
    return alloc
