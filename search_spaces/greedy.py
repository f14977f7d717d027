"""Search space of `greedy` (docs/greedy.md, docs/search.md); its stages always fit the budget.

| knob             | range                                        | note                          |
|------------------|----------------------------------------------|-------------------------------|
| aux_k            | int [1, 3]                                   | the paper's k                 |
| decoupled        | {false, true}                                | DGL: all groups at once       |
| blocks_per_stage | int [fewest that fits, max(that, ceil(L/2))] | every stage gets >= 1 epoch   |
| epochs_per_block | one uniform [0.2, 1] per stage, normalised   | sequential only (DGL: 1 stage) |
"Fits": one epoch of each sequential stage fits the budget (trainables.compute.fits_budget): with
budget.unit "epochs" ceil(L / blocks_per_stage) <= epochs; with "flops" its FLOPs, which depend on
aux_k and the head, are at most 1.1 x epochs standard epochs (a decoupled trial: its one stage). The
shared nuisance knobs (search_spaces.common) come first; their schedule shape (warm-up, hold,
anneal) applies to each stage, since every stage restarts the schedule. aux_k shapes layerCNN's head
(and the pooled one): it is searched only where the head is one of them, i.e. not for decoupled
trials, whose default head is DGL's own (fixed design), unless the spec pins aux_head. auto_depth
changes what is trained, aux_head/width_aux what a head costs and final_head which classifier is
deployed, so they are spec choices (`[fixed.greedy]`), not searched; pinning auto_depth,
cache_features or epochs_per_block keeps the search sequential (decoupled=false).
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
from trainables.errors import UserError

if TYPE_CHECKING:
    import optuna

SEQUENTIAL_ONLY = ("auto_depth", "cache_features", "epochs_per_block")
NOTE = (
    "every greedy stage restarts the schedule, so the shared shape (warmup_frac, hold, "
    "anneal_frac) "
    "applies per stage; anneal_frac unset (first trial) is greedy's 0.25; aux_k only where the "
    "head is layerCNN's (sequential trials; decoupled ones use DGL's own head, which has no k)"
)


def space(trial: optuna.Trial, ctx: ArmContext) -> dict[str, Any]:
    """Shared knobs plus decoupling, the head's k, block grouping and each stage's epoch share."""
    shared_space(trial, ctx)
    L = ctx.num_blocks
    sequential_only = any(ctx.pinned.get(key) not in (None, False) for key in SEQUENTIAL_ONLY)
    decoupled = False if sequential_only else trial.suggest_categorical("decoupled", (False, True))
    aux_k = trial.suggest_int("aux_k", 1, 3) if _has_k(ctx, decoupled) else None
    fewest = fewest_blocks_per_stage(ctx, aux_k, decoupled)
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
        "blocks_per_stage": max(
            p.blocks_per_stage,
            fewest_blocks_per_stage(ctx, p.k if _has_k(ctx, decoupled) else None, decoupled),
        ),
        **equal_stages,
    }


def fewest_blocks_per_stage(ctx: ArmContext, aux_k: int | None, decoupled: bool) -> int:
    """The fewest blocks per stage whose stages, with an aux head of `aux_k` (None: a head
    without k), fit the budget (one stage of all blocks, standard training, always does)."""
    for per_stage in range(1, ctx.num_blocks + 1):
        if ctx.fits(
            aux_k=aux_k, blocks_per_stage=per_stage, decoupled=decoupled, epochs_per_block=None
        ):
            return per_stage
    raise UserError(
        f"epochs={ctx.epochs} is too small for greedy's search on {ctx.model}: not even one stage "
        "of all blocks fits; raise epochs"
    )


def _has_k(ctx: ArmContext, decoupled: bool) -> bool:
    """Whether the trial's head takes aux_k: layerCNN's or the pooled one, not DGL's."""
    from trainables.methods.greedy import GreedyParams

    head = GreedyParams(aux_head=ctx.pinned.get("aux_head"), decoupled=decoupled).head_kind
    return head != "dgl"
