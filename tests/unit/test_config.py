"""TrainConfig: flat <-> structured, validation errors that name key, value and valid values."""

from __future__ import annotations

import pytest

from trainables.config import TrainConfig, parse_value


def test_from_flat_splits_method_params():
    c = TrainConfig.from_flat({"model": "vgg11", "lr": 0.1, "split_ratio": 0.4})
    assert c.model == "vgg11" and c.lr == 0.1 and c.params == {"split_ratio": 0.4}
    assert TrainConfig.from_flat(c.to_flat()) == c


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("epochs", 0, "epochs=0"),
        ("lr", 0.0, "lr=0.0"),
        ("optimizer", "adam", "sgd, adamw"),
        ("schedule", "step", "cosine, onecycle, constant"),
        ("val_fraction", 1.0, "val_fraction"),
        ("device", "tpu", "auto, cpu, cuda"),
        ("width", -1, "width"),
        ("warmup_frac", 1.0, r"warmup_frac=1.0.*\[0.0, 1.0\)"),
        ("anneal_frac", 0, r"anneal_frac=0.*\(0.0, 1.0\]"),
        ("anneal_frac", 1.5, "anneal_frac=1.5"),
    ],
)
def test_bad_values_name_key_and_valid_values(key, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig.from_flat({key: value})


@pytest.mark.parametrize(
    "text,value",
    [
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ("False", False),
        ("none", None),
        ("1,2,1", [1, 2, 1]),
        ("[0.5, 0.5]", [0.5, 0.5]),
        ("vgg11", "vgg11"),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_onecycle_refuses_a_schedule_shape():
    """onecycle has its own warm-up and anneal: a warm-up or hold on top is refused, naming the
    value."""
    for shape in ({"warmup_frac": 0.1}, {"anneal_frac": 0.5}):
        with pytest.raises(
            ValueError, match=f"{next(iter(shape))}=.* needs schedule=cosine or constant"
        ):
            TrainConfig.from_flat({"schedule": "onecycle", **shape})
    TrainConfig.from_flat({"schedule": "onecycle", "warmup_frac": 0.0, "anneal_frac": 1.0})
