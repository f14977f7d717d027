"""What every search space shares: the arm context, the shared nuisance space, pinning and sample
cleanup.

A space is an Optuna define-by-run function `space(trial, ctx) -> dict` (OptunaSearch's API).
Every method's space starts with `shared_space`: the nuisance knobs with the same ranges for
every arm (docs/design.md, the fair-comparison rules); a method adds only its own knobs on top.
Values a space samples only to derive a knob (e.g. per-stage weights that become `stage_fracs`)
are named with `INTERNAL_PREFIX`; `to_flat_config` drops them before a `TrainConfig` is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainables.config import TrainConfig

if TYPE_CHECKING:
    import optuna

INTERNAL_PREFIX = "_"
BATCH_SIZES = (32, 64, 128)
LR_RANGES = {"adamw": (1e-4, 1e-2), "sgd": (1e-3, 0.3)}
WEIGHT_DECAY_RANGE = (1e-6, 1e-2)
WARMUP_FRAC_RANGE = (0.0, 0.2)
ANNEAL_FRAC_RANGE = (
    0.1,
    1.0,
)  # 1: the schedule spans the steps after warm-up; lower holds lr longer first
LABEL_SMOOTHING_RANGE = (0.0, 0.2)
SHARED_KNOBS = ("lr", "weight_decay", "batch_size", "warmup_frac", "anneal_frac", "label_smoothing")
ARM_WIDE = (
    *SHARED_KNOBS,
    "optimizer",
    "schedule",
)  # a spec pins these for all arms or none: they shape the space
WEIGHT_RANGE = (
    0.2,
    1.0,
)  # per-stage weights before normalisation: no stage gets < 1/5 of another's share


@dataclass(frozen=True)
class ArmContext:
    """What a space may depend on: the arm's model (its block count), the budget it must fit (in
    `unit`, trainables/compute.py), pinned values."""

    model: str
    num_blocks: int
    epochs: float
    optimizer: str = "adamw"
    pinned: Mapping[str, Any] = field(default_factory=dict)  # spec `fixed` values: never searched
    method: str = "standard"
    dataset: str = "digits"
    unit: str = "flops"

    def fits(self, **params: Any) -> bool:
        """Whether the arm's method with `params` (over the pinned values) can give each of its
        stages one epoch within the budget (trainables.compute.fits_budget)."""
        from trainables.compute import fits_budget

        flat = {
            **self.pinned,
            **params,
            "model": self.model,
            "method": self.method,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "budget_unit": self.unit,
        }
        return fits_budget(TrainConfig.from_flat(flat))


Space = Callable[["optuna.Trial", ArmContext], dict[str, Any]]


SGD_DEFAULT_LR = 0.05  # TrainConfig's lr default is AdamW's; SGD's first trial starts here instead


def shared_space(trial: optuna.Trial, ctx: ArmContext) -> dict[str, Any]:
    """The nuisance knobs every arm searches alike: lr (log, range per optimiser), weight_decay
    (log), batch_size, warm-up and annealed shares of the schedule (none under a pinned onecycle),
    label smoothing."""
    low, high = LR_RANGES[ctx.optimizer]
    trial.suggest_float("lr", low, high, log=True)
    trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE, log=True)
    trial.suggest_categorical("batch_size", BATCH_SIZES)
    if ctx.pinned.get("schedule") != "onecycle":
        trial.suggest_float("warmup_frac", *WARMUP_FRAC_RANGE)
        trial.suggest_float("anneal_frac", *ANNEAL_FRAC_RANGE)
    trial.suggest_float("label_smoothing", *LABEL_SMOOTHING_RANGE)
    return {}


def shared_defaults(ctx: ArmContext, default_anneal_frac: float = 1.0) -> dict[str, Any]:
    """The shared knobs' defaults, the first trial of every search: TrainConfig's (SGD_DEFAULT_LR
    for SGD), with the method's own `default_anneal_frac` (what its training uses when anneal_frac
    is unset)."""
    base = TrainConfig()
    lr = SGD_DEFAULT_LR if ctx.optimizer == "sgd" else base.lr
    shape = (
        {}
        if ctx.pinned.get("schedule") == "onecycle"
        else {"warmup_frac": base.warmup_frac, "anneal_frac": default_anneal_frac}
    )
    return {
        "lr": lr,
        "weight_decay": base.weight_decay,
        "batch_size": base.batch_size,
        **shape,
        "label_smoothing": base.label_smoothing,
    }


def normalised_weights(trial: optuna.Trial, name: str, count: int) -> list[float]:
    """`count` uniform weights in WEIGHT_RANGE (internal params `_<name>_<i>`), normalised to sum
    to 1."""
    weights = [
        trial.suggest_float(f"{INTERNAL_PREFIX}{name}_{i}", *WEIGHT_RANGE) for i in range(count)
    ]
    total = sum(weights)
    return [round(w / total, 4) for w in weights]


class PinnedTrial:
    """An Optuna trial whose `suggest_*` calls return the pinned value for pinned names (spec
    `fixed`)."""

    def __init__(self, trial: optuna.Trial, pinned: Mapping[str, Any]):
        self._trial = trial
        self._pinned = dict(pinned)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if not name.startswith("suggest_"):
            return attr

        @functools.wraps(attr)
        def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
            return self._pinned[param] if param in self._pinned else attr(param, *args, **kwargs)

        return suggest


def bound_space(space: Space, ctx: ArmContext) -> Callable[[optuna.Trial], dict[str, Any]]:
    """`space` as the one-argument define-by-run function OptunaSearch takes, honouring
    `ctx.pinned`."""
    return functools.partial(_run_pinned, space, ctx)


def _run_pinned(space: Space, ctx: ArmContext, trial: optuna.Trial) -> dict[str, Any]:
    derived = space(PinnedTrial(trial, ctx.pinned), ctx)
    return {key: value for key, value in derived.items() if key not in ctx.pinned}


def to_flat_config(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's config without the search-internal values: the flat dict `TrainConfig.from_flat`
    takes."""
    return {key: value for key, value in sample.items() if not key.startswith(INTERNAL_PREFIX)}
