"""Search space of `layer_to_layer` (docs/layer_to_layer.md); the split schedule always fits the
epoch budget.

| knob            | range                                      | note                            |
|-----------------|--------------------------------------------|---------------------------------|
| split_ratio     | uniform [0.1, 0.9]                         | s_1 = clamp(round(r L), 1, L-1) |
| finetune_frac   | {0, 0.05, ..., 0.5}                        | only when a finetune stage fits |
| split_step      | int [fewest that fits, max(that, L-2)]     | its stages (+ finetune) fit     |
| stage_fracs     | one uniform [0.2, 1] per stage, normalised | count from (L, r, step)         |
| kd_alpha        | uniform [0, 1]                             |                                 |
| kd_temperature  | log-uniform [1, 10]                        |                                 |
| teacher_grad    | uniform [0, 1]                             | 0 detaches the teacher's input  |
| aux             | {linear, conv}                             | the student's auxiliary head    |

Every range is conditioned on the samples before it, so every sample fits the budget as sampled:
what Optuna records is what trains (nothing is raised or dropped afterwards). "Fits": one epoch
per stage fits the budget (trainables.compute.fits_budget): with budget.unit "epochs" the stages
are at most `epochs`; with "flops" their FLOPs are at most 1.1 x epochs standard epochs, counted
with the knobs sampled later at their costliest (the conv head, a teacher gradient), or pinned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import (
    INTERNAL_PREFIX,
    ArmContext,
    normalised_weights,
    shared_defaults,
    shared_space,
)
from trainables.errors import UserError
from trainables.methods.layer_to_layer import split_schedule

if TYPE_CHECKING:
    import optuna

FINETUNE_PROBE = 0.5  # any finetune_frac > 0: a finetune stage of one epoch
# the values of the knobs sampled after split_step that cost the most FLOPs per epoch
COSTLIEST = {"aux": "conv", "teacher_grad": 1.0}


def space(trial: optuna.Trial, ctx: ArmContext) -> dict[str, Any]:
    """Shared knobs plus the split schedule, distillation and finetune knobs (table above)."""
    shared_space(trial, ctx)
    L = ctx.num_blocks
    ratio = trial.suggest_float("split_ratio", 0.1, 0.9)
    if not fits(ctx, ratio, L, 0.0):  # the largest step: 1 or 2 stages
        raise UserError(
            f"epochs={ctx.epochs} is too small for layer_to_layer's search on {L} blocks: a split "
            f"schedule of split_ratio={ratio:.3f} has up to "
            f"{len(split_schedule(L, ratio, L))} stages of >= 1 epoch each; raise epochs"
        )
    finetune = 0.0
    if fits(ctx, ratio, L, FINETUNE_PROBE):
        finetune = trial.suggest_float("finetune_frac", 0.0, 0.5, step=0.05)
    fewest = fewest_step(ctx, ratio, finetune)
    step = trial.suggest_int("split_step", fewest, max(fewest, L - 2))
    trial.suggest_float("kd_alpha", 0.0, 1.0)
    trial.suggest_float("kd_temperature", 1.0, 10.0, log=True)
    trial.suggest_float("teacher_grad", 0.0, 1.0)
    trial.suggest_categorical("aux", ("linear", "conv"))
    return {
        "stage_fracs": normalised_weights(trial, "stage_w", len(split_schedule(L, ratio, step)))
    }


def defaults(ctx: ArmContext) -> dict[str, Any]:
    """The first trial: LayerToLayerParams' defaults (equal stages), which match standard on digits,
    with split_step raised to the fewest that fits the budget, as `space` allows."""
    from trainables.methods.layer_to_layer import LayerToLayerParams

    p = LayerToLayerParams()
    equal_stages = {f"{INTERNAL_PREFIX}stage_w_{i}": 1.0 for i in range(ctx.num_blocks)}
    step = max(p.split_step, fewest_step(ctx, p.split_ratio, p.finetune_frac))
    return {
        **shared_defaults(ctx),
        "split_ratio": p.split_ratio,
        "split_step": step,
        "finetune_frac": p.finetune_frac,
        "kd_alpha": p.kd_alpha,
        "kd_temperature": p.kd_temperature,
        "teacher_grad": p.teacher_grad,
        "aux": p.aux,
        **equal_stages,
    }


def fewest_step(ctx: ArmContext, ratio: float, finetune: float) -> int:
    """The smallest split_step whose schedule from `ratio` (and a finetune when `finetune` > 0) fits
    (the caller made sure that the largest step, with its 1 or 2 stages, does)."""
    return next(step for step in range(1, ctx.num_blocks + 1) if fits(ctx, ratio, step, finetune))


def fits(ctx: ArmContext, ratio: float, step: int, finetune: float) -> bool:
    """Whether one epoch per stage of this schedule fits, with the knobs sampled after it at their
    costliest (COSTLIEST, unless pinned)."""
    later = {k: v for k, v in COSTLIEST.items() if k not in ctx.pinned}
    return ctx.fits(
        split_ratio=ratio, split_step=step, finetune_frac=finetune, stage_fracs=None, **later
    )
