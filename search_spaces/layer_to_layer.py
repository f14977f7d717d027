"""Search space of `layer_to_layer` (DESIGN §3); the split schedule always fits the epoch budget.

| knob            | range                                     | note                                        |
|-----------------|-------------------------------------------|---------------------------------------------|
| split_ratio     | uniform [0.1, 0.9]                        | s_1 = clamp(round(r L), 1, L-1)             |
| split_step      | int [1, max(1, L-2)], raised until it fits | stages + finetune <= epochs                |
| finetune_frac   | {0, 0.05, ..., 0.5}                       | dropped to 0 when even one stage won't fit  |
| stage_fracs     | one uniform [0.2, 1] per stage, normalised | the stage count follows from (L, r, step)  |
| kd_alpha        | uniform [0, 1]                            |                                             |
| kd_temperature  | log-uniform [1, 10]                       |                                             |
| teacher_grad    | uniform [0, 1]                            | beta: 0 detaches the teacher's input        |
| aux             | {linear, conv}                            | the student's auxiliary head                |
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces.common import INTERNAL_PREFIX, ArmContext, normalised_weights, shared_defaults, shared_space
from trainables.methods.layer_to_layer import split_schedule

if TYPE_CHECKING:
    import optuna


def space(trial: "optuna.Trial", ctx: ArmContext) -> dict[str, Any]:
    """Shared knobs plus the split schedule, distillation and finetune knobs (table above)."""
    shared_space(trial, ctx)
    L = ctx.num_blocks
    ratio = trial.suggest_float("split_ratio", 0.1, 0.9)
    step = trial.suggest_int("split_step", 1, max(1, L - 2))
    finetune = trial.suggest_float("finetune_frac", 0.0, 0.5, step=0.05)
    step, finetune = fit_schedule(L, ctx.epochs, ratio, step, finetune)
    stages = len(split_schedule(L, ratio, step))
    trial.suggest_float("kd_alpha", 0.0, 1.0)
    trial.suggest_float("kd_temperature", 1.0, 10.0, log=True)
    trial.suggest_float("teacher_grad", 0.0, 1.0)
    trial.suggest_categorical("aux", ("linear", "conv"))
    return {"split_step": step, "finetune_frac": round(finetune, 2),
            "stage_fracs": normalised_weights(trial, "stage_w", stages)}


def defaults(ctx: ArmContext) -> dict[str, Any]:
    """The first trial: LayerToLayerParams' defaults (equal stages), which match standard on digits."""
    from trainables.methods.layer_to_layer import LayerToLayerParams

    p = LayerToLayerParams()
    equal_stages = {f"{INTERNAL_PREFIX}stage_w_{i}": 1.0 for i in range(ctx.num_blocks)}
    return {**shared_defaults(ctx), "split_ratio": p.split_ratio, "split_step": p.split_step,
            "finetune_frac": p.finetune_frac, "kd_alpha": p.kd_alpha, "kd_temperature": p.kd_temperature,
            "teacher_grad": p.teacher_grad, "aux": p.aux, **equal_stages}


def fit_schedule(num_blocks: int, epochs: int, ratio: float, step: int, finetune: float) -> tuple[int, float]:
    """The smallest split_step >= `step` whose stages (+1 for a finetune) fit `epochs`; else no finetune."""
    for finetune_frac in (finetune, 0.0):
        extra = 1 if finetune_frac > 0 else 0
        for candidate in range(step, num_blocks + 1):
            if len(split_schedule(num_blocks, ratio, candidate)) + extra <= epochs:
                return candidate, finetune_frac
    raise ValueError(f"epochs={epochs} is too small for layer_to_layer with split_ratio={ratio} on "
                     f"{num_blocks} blocks: even split_step={num_blocks} needs more stages; raise epochs")
