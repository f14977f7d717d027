"""TrainConfig: the one flat configuration every method, the CLI and Ray trials share."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, get_args, get_type_hints

from trainables.errors import UserError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")
DEVICES = ("auto", "cpu", "cuda")
BUDGET_UNITS = ("flops", "epochs")  # what `epochs` counts (trainables/compute.py)


@dataclass
class TrainConfig:
    """Shared knobs (docs/design.md); a method's own knobs live in `params`, checked by it."""

    model: str = "seed_cnn"
    method: str = "standard"
    dataset: str = "digits"
    data_dir: str | None = None
    # the run's budget in standard-epoch units: with budget_unit "flops" the training FLOPs of this
    # many epochs of standard training of the model (may be fractional; each method derives its own
    # epochs per stage), with "epochs" a whole number of epochs split over the stages
    epochs: float = 10
    budget_unit: str = "flops"
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_frac: float = (
        0.0  # share of each schedule's steps with a linear warm-up to lr (trainables.methods.optim)
    )
    anneal_frac: float | None = (
        None  # share of the steps after warm-up that `schedule` runs over, lr held before
    )
    #   it; None: the method's default (greedy 0.25 of each stage, other methods 1; 1 with onecycle)
    label_smoothing: float = 0.0
    width: float = 1.0
    seed: int = 0
    val_fraction: float = 0.1
    max_train_samples: int | None = None
    augment: bool = True
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    probes: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("device", self.device, DEVICES)
        check_choice("budget_unit", self.budget_unit, BUDGET_UNITS)
        if self.budget_unit == "epochs":
            check_range("epochs", self.epochs, 1, None)
            if self.epochs != int(self.epochs):
                raise UserError(
                    f"epochs={self.epochs!r} must be a whole number with budget_unit=epochs; "
                    "use budget_unit=flops for a fractional budget (standard epochs of FLOPs)"
                )
        else:
            check_range("epochs", self.epochs, 0.0, None, low_open=True)
        check_range("batch_size", self.batch_size, 1, None)
        check_range("lr", self.lr, 0.0, None, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, None)
        check_range("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_range("warmup_frac", self.warmup_frac, 0.0, 1.0, high_open=True)
        if self.anneal_frac is not None:
            check_range("anneal_frac", self.anneal_frac, 0.0, 1.0, low_open=True)
        if self.schedule == "onecycle":
            shaped = [
                f"{k}={v}"
                for k, v, plain in (
                    ("warmup_frac", self.warmup_frac, 0.0),
                    ("anneal_frac", self.anneal_frac, 1.0),
                )
                if v not in (None, plain)
            ]
            if shaped:
                raise UserError(
                    f"{', '.join(shaped)} needs schedule=cosine or constant; onecycle warms up and "
                    "anneals over all its steps (use warmup_frac=0 and anneal_frac=1 with it)"
                )
        check_range("width", self.width, 0.0, None, low_open=True)
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, low_open=True, high_open=True)
        if self.max_train_samples is not None:
            check_range("max_train_samples", self.max_train_samples, 1, None)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - {"params"}

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        """Split a flat dict (CLI `--set`, Optuna samples) into shared fields and method params."""
        shared = {k: v for k, v in flat.items() if k in cls.field_names()}
        params = dict(flat.get("params", {}))
        params.update(
            {k: v for k, v in flat.items() if k not in cls.field_names() and k != "params"}
        )
        return cls(**shared, params=params)

    def to_flat(self) -> dict[str, Any]:
        """The inverse of `from_flat`: shared fields and method params in one flat dict."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if k != "params"}
        flat.update(self.params)
        return flat


def check_field_types(config: TrainConfig) -> None:
    """Raise a UserError naming the first shared field whose value has the wrong type (e.g.
    `--set seed=abc`)."""
    hints = get_type_hints(TrainConfig)
    for item in dataclasses.fields(TrainConfig):
        if item.name == "params":
            continue
        allowed = get_args(hints[item.name]) or (hints[item.name],)  # `X | None` -> (X, NoneType)
        value = getattr(config, item.name)
        if not any(_has_type(value, kind) for kind in allowed):
            names = " or ".join("None" if kind is type(None) else kind.__name__ for kind in allowed)
            raise UserError(f"{item.name}={value!r} is not valid; expected {names}")


def _has_type(value: Any, kind: type) -> bool:
    """isinstance, except that a bool is no number and an int is a float (JSON/TOML `1` for
    `1.0`)."""
    if kind in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def check_choice(key: str, value: Any, valid: tuple[Any, ...] | list[Any]) -> None:
    """Raise a UserError naming the key, the bad value and the valid choices."""
    if value not in valid:
        raise UserError(
            f"{key}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}"
        )


def check_range(
    key: str,
    value: float,
    low: float | None,
    high: float | None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise a UserError naming the key, the value and the valid interval (also when the value is
    no number)."""
    left = ("(" if low_open else "[") + ("-inf" if low is None else str(low))
    right = ("inf" if high is None else str(high)) + (")" if high_open else "]")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise UserError(f"{key}={value!r} is not a number; expected a number in {left}, {right}")
    ok = True
    if low is not None:
        ok &= value > low if low_open else value >= low
    if high is not None:
        ok &= value < high if high_open else value <= high
    if not ok:
        raise UserError(f"{key}={value!r} is out of range; valid range: {left}, {right}")


def parse_value(text: str) -> Any:
    """Parse a `--set key=value` right-hand side: bool, int, float, list (comma or JSON), else
    str."""
    import json

    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        pass
    if "," in text:
        return [parse_value(part) for part in text.split(",")]
    return text
