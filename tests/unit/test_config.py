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
    [("epochs", 0, "epochs=0"), ("lr", 0.0, "lr=0.0"), ("optimizer", "adam", "sgd, adamw"),
     ("schedule", "step", "cosine, onecycle, constant"), ("val_fraction", 1.0, "val_fraction"),
     ("device", "tpu", "auto, cpu, cuda"), ("width", -1, "width")],
)
def test_bad_values_name_key_and_valid_values(key, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        TrainConfig.from_flat({key: value})


@pytest.mark.parametrize(
    "text,value",
    [("3", 3), ("0.5", 0.5), ("true", True), ("False", False), ("none", None), ("1,2,1", [1, 2, 1]),
     ("[0.5, 0.5]", [0.5, 0.5]), ("vgg11", "vgg11")],
)
def test_parse_value(text, value):
    assert parse_value(text) == value
