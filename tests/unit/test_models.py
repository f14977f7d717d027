"""Unit tests for the BlockNet model zoo (trainables.models)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.models import MODELS, BlockNet, build_model, model_names

NUM_CLASSES = 10

# Block count L of every registry model.
EXPECTED_BLOCKS: dict[str, int] = {
    "seed_cnn": 5,
    "vgg11": 8,
    "vgg11_bn": 8,
    "vgg16": 13,
    "vgg16_bn": 13,
    "resnet18": 9,
    "resnext": 10,
    "densenet": 4,
}

# Measured parameter counts at width 1.0 with 10 classes (checked to +-50%, seed_cnn exactly).
EXPECTED_PARAMS: dict[str, int] = {
    "seed_cnn": 2_168_362,
    "vgg11": 9_225_610,
    "vgg11_bn": 9_231_114,
    "vgg16": 14_719_818,
    "vgg16_bn": 14_728_266,
    "resnet18": 11_173_962,
    "resnext": 3_172_426,
    "densenet": 176_122,
}

# (name, width) cases: every registry model at 0.25, plus seed_cnn at full width.
CASES = [(name, 0.25) for name in sorted(MODELS)] + [("seed_cnn", 1.0)]
CASE_IDS = [f"{name}-w{width}" for name, width in CASES]


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build(name: str, width: float) -> BlockNet:
    torch.manual_seed(0)
    return build_model(name, NUM_CLASSES, width)


def _batch() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_registry_contents() -> None:
    assert set(MODELS) == set(EXPECTED_BLOCKS)
    assert model_names() == sorted(EXPECTED_BLOCKS)


@pytest.mark.parametrize(("name", "width"), CASES, ids=CASE_IDS)
def test_structure_and_output_shape(name: str, width: float) -> None:
    model = _build(name, width)
    assert isinstance(model, BlockNet)
    assert model.name == name
    assert model.num_blocks == EXPECTED_BLOCKS[name]
    model.eval()
    with torch.no_grad():
        y = model(_batch())
    assert y.shape == (2, NUM_CLASSES)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "width"), CASES, ids=CASE_IDS)
def test_block_chaining_matches_full_forward(name: str, width: float) -> None:
    model = _build(name, width).eval()
    x = _batch()
    x_copy = x.clone()
    with torch.no_grad():
        full = model(x)
        # One block at a time; the last slice reaches block L-1, so it applies the head.
        z = x
        for i in range(model.num_blocks):
            z = model(z, i, i + 1)
        torch.testing.assert_close(z, full)
        # Split at every k: model(x, 0, k) stops before the head, model(z, k) finishes it.
        # (k = L is excluded: model(x, 0, L) already applies the head.)
        for k in range(model.num_blocks):
            z = model(x, 0, k)
            torch.testing.assert_close(model(z, k), full, msg=lambda m, k=k: f"split at k={k}: {m}")
    # No block may modify its input in place (methods cache block outputs).
    assert torch.equal(x, x_copy)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_param_count_at_full_width(name: str) -> None:
    n = _count(build_model(name, NUM_CLASSES, 1.0))
    expected = EXPECTED_PARAMS[name]
    if name == "seed_cnn":
        # 896 + 9248 + 18496 + 36928 + 2097664 + 5130 (conv32, conv32, conv64, conv64, fc512, head).
        assert n == 896 + 9248 + 18496 + 36928 + 2097664 + 5130 == expected
    else:
        assert 0.5 * expected <= n <= 1.5 * expected, (
            f"{name}: {n:,} params, expected ~{expected:,}"
        )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_width_shrinks_model(name: str) -> None:
    assert _count(build_model(name, NUM_CLASSES, 0.25)) < _count(
        build_model(name, NUM_CLASSES, 1.0)
    )


@pytest.mark.parametrize(("name", "width"), CASES, ids=CASE_IDS)
def test_backward_reaches_every_parameter(name: str, width: float) -> None:
    model = _build(name, width).train()
    y = model(_batch())
    loss = nn.functional.cross_entropy(y, torch.tensor([0, 1]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_unknown_name_raises() -> None:
    with pytest.raises(ValueError) as exc:
        build_model("alexnet", NUM_CLASSES)
    msg = str(exc.value)
    assert "valid models" in msg and "seed_cnn" in msg and "'alexnet'" in msg


@pytest.mark.parametrize("width", [0.0, -1.0])
def test_bad_width_raises(width: float) -> None:
    with pytest.raises(ValueError, match=str(width)):
        build_model("seed_cnn", NUM_CLASSES, width)


@pytest.mark.parametrize("num_classes", [1, 0])
def test_bad_num_classes_raises(num_classes: int) -> None:
    with pytest.raises(ValueError, match=f"got {num_classes}"):
        build_model("seed_cnn", num_classes)


@pytest.mark.parametrize("name", ["resnext", "densenet", "resnet18", "vgg16_bn"])
def test_tiny_width_still_builds(name: str) -> None:
    model = build_model(name, NUM_CLASSES, 0.01).eval()
    with torch.no_grad():
        assert model(_batch()).shape == (2, NUM_CLASSES)
