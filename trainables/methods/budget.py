"""The one epoch allocator of every method's stages (trainables.compute gives it the budget)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def allocate_epochs(
    weights: Sequence[float], budget: float, costs: Sequence[float] | None = None
) -> list[int]:
    """Whole epochs per stage proportional to `weights`, >= 1 each, costing about `budget`.

    An epoch of stage i costs `costs[i]` (default 1 each: the epochs then add up to `budget`, a
    whole number of at least one per stage, as the "epochs" unit asks). Largest remainder: every
    stage first gets floor(share) (at least 1), where the shares scale the weights so that they
    cost `budget`; then epochs go to the stages furthest below their share (earlier stages first
    on ties) while that brings the cost nearer the budget, or are taken back from the stages
    furthest above it while the floor of 1 overshoots. A larger weight never gets fewer epochs.
    The cost ends within half a stage's epoch of `budget`, unless one epoch per stage costs more.
    """
    costs = [1.0] * len(weights) if costs is None else list(costs)
    if len(costs) != len(weights) or not all(c > 0 for c in costs):
        raise ValueError(f"costs={costs!r} must be one positive number per stage")
    total = sum(w * c for w, c in zip(weights, costs))
    targets = [w / total * budget for w in weights]
    alloc = [max(1, math.floor(t)) for t in targets]

    def cost() -> float:
        return sum(a * c for a, c in zip(alloc, costs))

    while any(a > 1 for a in alloc):  # only the max(1, .) floor can overshoot
        i = max((i for i, a in enumerate(alloc) if a > 1), key=lambda i: alloc[i] - targets[i])
        if cost() - costs[i] / 2 < budget:
            break
        alloc[i] -= 1
    while True:
        i = max(range(len(alloc)), key=lambda i: targets[i] - alloc[i])
        if cost() + costs[i] / 2 > budget:
            break
        alloc[i] += 1
    return alloc
