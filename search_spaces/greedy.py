"""Search space of `greedy` (DESIGN §3, seeds 002-004); the stage count always fits the epoch budget.

| knob             | range                                            | note                                   |
|------------------|--------------------------------------------------|----------------------------------------|
| aux_k            | int [1, 3]                                       | the paper's k (head: k-1 conv layers)  |
| decoupled        | {false, true}                                    | DGL: all groups at once, detached      |
| blocks_per_stage | int [ceil(L/epochs), max(that, ceil(L/2))]       | every stage gets >= 1 epoch            |
| epochs_per_block | one uniform [0.2, 1] per stage, normalised       | sequential only (decoupled: one stage) |
The shared nuisance knobs (search_spaces.common) come first; their schedule shape (warm-up, hold,
anneal) applies to each stage, since every stage restarts the schedule.
aux_k shapes layerCNN's head (and the pooled one): it is searched only where the head is one of
them, i.e. not for decoupled trials, whose default head is DGL's own (fixed design), unless the
spec pins aux_head.
auto_depth (depth selection) changes what is trained, aux_head/width_aux what a head costs and
final_head which classifier is deployed, so they are spec choices (`[fixed.greedy]`), not searched;
pinning auto_depth, cache_features or epochs_per_block keeps the search sequential (decoupled=false).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from search_spaces.common import (
    INTERNAL_PREFIX,
    ArmContext,
    normalised_weights,
    shared_defaults,
    shared_space,
)

if TYPE_CHECKING:
    import optuna

SEQUENTIAL_ONLY = ("auto_depth", "cache_features", "epochs_per_block")
NOTE = (
    "every greedy stage restarts the schedule, so the shared shape (warmup_frac, hold, anneal_frac) "
    "applies per stage; anneal_frac unset (first trial) is greedy's 0.25; aux_k only where the "
    "head is layerCNN's (sequential trials; decoupled ones use DGL's own head, which has no k)"
)


def space(trial: optuna.Trial, ctx: ArmContext) -> dict[str, Any]:
    """Shared knobs plus decoupling, the head's k, block grouping and each stage's epoch share."""
    shared_space(trial, ctx)
    L = ctx.num_blocks
    sequential_only = any(ctx.pinned.get(key) not in (None, False) for key in SEQUENTIAL_ONLY)
    decoupled = False if sequential_only else trial.suggest_categorical("decoupled", (False, True))
    if _has_k(ctx, decoupled):
        trial.suggest_int("aux_k", 1, 3)
    fewest = math.ceil(L / ctx.epochs)
    per_stage = trial.suggest_int("blocks_per_stage", fewest, max(fewest, math.ceil(L / 2)))
    if decoupled:
        return {}
    return {"epochs_per_block": normalised_weights(trial, "block_w", math.ceil(L / per_stage))}


def defaults(ctx: ArmContext) -> dict[str, Any]:
    """The first trial: GreedyParams' defaults (sequential greedy unless decoupled is pinned), the
    fewest blocks per stage that fit."""
    from trainables.methods.greedy import ANNEAL_FRAC, GreedyParams

    p = GreedyParams()
    decoupled = bool(ctx.pinned.get("decoupled", p.decoupled))
    equal_stages = {f"{INTERNAL_PREFIX}block_w_{i}": 1.0 for i in range(ctx.num_blocks)}
    return {
        **shared_defaults(ctx, ANNEAL_FRAC),
        "decoupled": p.decoupled,
        **({"aux_k": p.k} if _has_k(ctx, decoupled) else {}),
        "blocks_per_stage": max(p.blocks_per_stage, math.ceil(ctx.num_blocks / ctx.epochs)),
        **equal_stages,
    }


def _has_k(ctx: ArmContext, decoupled: bool) -> bool:
    """Whether the trial's head takes aux_k: layerCNN's or the pooled one, not DGL's."""
    from trainables.methods.greedy import GreedyParams

    head = GreedyParams(aux_head=ctx.pinned.get("aux_head"), decoupled=decoupled).head_kind
    return head != "dgl"
