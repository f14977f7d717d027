"""The run plan: FLOPs counted on the meta device match a hand count and what a real epoch runs,
every method's plan costs its budget within 10%, and budget_unit=epochs plans exactly as before."""

from __future__ import annotations

import dataclasses
import logging
import math
import random

import pytest
import torch
from torch import nn

from trainables import compute
from trainables.compute import BUDGET_TOLERANCE, count_flops, run_plan, stage_costs
from trainables.config import TrainConfig
from trainables.data import Batcher, DataSplits, ImageSet
from trainables.methods.aux_heads import GREEDY_HEADS
from trainables.methods.budget import allocate_epochs
from trainables.models import MODELS, BlockNet
from trainables.training import build_model_and_method, fit

HW, CLASSES = 32 * 32, 10
# The tiny model below, counted by hand per image (2 FLOPs per multiply-add, FlopCounterMode's rule)
CONV0 = 2 * HW * 4 * 3 * 9  # 3x3 conv, 3 -> 4 channels, at 32x32
CONV1 = 2 * HW * 4 * 4  # 1x1 conv, 4 -> 4 channels, at 32x32 (blocks 1 and 2)
HEAD = 2 * 4 * CLASSES  # the network's head: pool, linear 4 -> 10 (layer_to_layer's linear aux)
AUX = 2 * (4 * 2 * 2) * CLASSES  # greedy's k=1 head: pool to 2x2, BN, linear 16 -> 10
# Forward, then backward: a weight gradient for each layer, an input gradient where the input
# needs one (not for the images, nor for a frozen or detached prefix's output).
STANDARD = 2 * CONV0 + 3 * CONV1 + 3 * CONV1 + 3 * HEAD
L2L_STAGE = STANDARD + 3 * HEAD  # every split: the same network plus the student's linear head
GREEDY_STAGE0 = 2 * CONV0 + 3 * AUX  # block 0 and its aux head
GREEDY_STAGE1 = CONV0 + 2 * CONV1 + 3 * AUX  # frozen block 0 forward, block 1 and its aux head


def tiny(num_classes: int, width: float) -> BlockNet:
    """Three conv blocks and a pooled linear head."""
    blocks = [
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.Conv2d(4, 4, 1, bias=False),
        nn.Conv2d(4, 4, 1, bias=False),
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
    return BlockNet(blocks, head, "tiny3")


@pytest.fixture
def tiny_model(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(MODELS, "tiny3", tiny)
    return "tiny3"


@pytest.fixture(scope="module")
def small_digits(digits: DataSplits) -> DataSplits:
    return dataclasses.replace(digits, train=ImageSet(digits.train.x[:64], digits.train.y[:64]))


def test_flops_charged_equal_a_hand_count(tiny_model, small_digits, make_config):
    """fit's flops and compute_epochs (what a search trial is charged) equal the hand count."""
    config = make_config(
        model=tiny_model, method="layer_to_layer", aux="linear", epochs=3, batch_size=16
    )
    final = fit(config, splits=small_digits)
    images = 64  # 4 batches of 16 per epoch
    assert final["stage_epochs"] == [2, 1]  # splits 1 and 2 cost L2L_STAGE / STANDARD each
    assert final["flops"] == images * 3 * L2L_STAGE
    assert final["compute_epochs"] == pytest.approx(3 * L2L_STAGE / STANDARD)
    assert [h["compute_epochs"] for h in final["history"]] == pytest.approx(
        [e * L2L_STAGE / STANDARD for e in (1, 2, 3)]
    )
    greedy = run_plan(make_config(model=tiny_model, method="greedy", aux_k=1, epochs=4), images)
    assert greedy.standard_epoch_flops == images * STANDARD
    assert greedy.stage_flops[:2] == [images * GREEDY_STAGE0, images * GREEDY_STAGE1]


# every method and variant, each greedy head among them
VARIANTS = [
    ("standard", {}),
    ("layer_to_layer", {}),
    ("layer_to_layer", {"finetune_frac": 0.2, "aux": "linear", "teacher_grad": 0.0}),
    *[("greedy", {"aux_head": head}) for head in GREEDY_HEADS],
    ("greedy", {"aux_k": 1, "epochs_per_block": [1, 2, 1, 2, 1, 2, 1, 2]}),
    ("greedy", {"decoupled": True}),
    ("greedy", {"cache_features": True}),
    ("greedy", {"auto_depth": True, "blocks_per_stage": 2}),
]


@pytest.mark.parametrize("method, params", VARIANTS)
@pytest.mark.parametrize("epochs", [8, 12.5, 30])
def test_every_plan_costs_its_budget_within_ten_percent(method, params, epochs):
    config = TrainConfig(model="vgg11", method=method, epochs=epochs, width=0.25, params=params)
    plan = run_plan(config, 1000)
    assert abs(plan.compute_epochs / epochs - 1) <= BUDGET_TOLERANCE
    assert min(plan.stage_epochs) >= 1


@pytest.mark.parametrize("method, params", VARIANTS)
def test_the_count_is_what_a_real_epoch_runs(method, params, small_digits):
    """Each stage's planned FLOPs equal FlopCounterMode's count of real epochs on the CPU: its
    first (a cached prefix is computed then) and its second (the per-epoch cost)."""
    config = TrainConfig(
        model="vgg11", method=method, epochs=20, width=0.125, batch_size=32, device="cpu"
    )
    config = dataclasses.replace(config, params=params)
    plan = run_plan(config, len(small_digits.train))
    method_obj = build_model_and_method(
        config, small_digits, torch.device("cpu"), plan.stage_epochs
    )
    batcher, generator = Batcher(small_digits), torch.Generator().manual_seed(0)

    def epoch() -> None:
        for x, y in method_obj.train_batches(small_digits.train, batcher, generator):
            method_obj.train_step(x, y)

    for stage, per_epoch, once in zip(
        method_obj.plan(), plan.stage_flops, plan.stage_once_flops, strict=True
    ):
        method_obj.start_stage(stage)
        method_obj.train_mode()
        assert count_flops(epoch)[1] == pytest.approx(per_epoch + once, rel=1e-6)
        assert count_flops(epoch)[1] == pytest.approx(per_epoch, rel=1e-6)


def test_auto_depth_stopping_early_uses_less_and_says_so(small_digits, make_config, caplog):
    config = make_config(
        method="greedy", aux_k=1, epochs=12, auto_depth=True, min_gain=1.0, batch_size=16
    )
    with caplog.at_level(logging.INFO, logger="trainables.training"):
        final = fit(config, splits=small_digits)
    assert final["epochs_run"] < final["epochs_total"]  # min_gain 1: the second stage gains less
    assert final["compute_epochs"] < final["compute_epochs_planned"]
    assert abs(final["compute_epochs_planned"] / 12 - 1) <= BUDGET_TOLERANCE
    assert "used" in caplog.text and "of the planned" in caplog.text


def test_a_budget_too_small_for_one_epoch_per_stage_is_refused():
    with pytest.raises(ValueError, match=r"epochs=1 is too small: greedy on vgg11 has 8 stages"):
        run_plan(TrainConfig(model="vgg11", method="greedy", epochs=1), 1000)
    with pytest.raises(ValueError, match=r"use epochs >= 8 or a larger blocks_per_stage"):
        run_plan(TrainConfig(model="vgg11", method="greedy", epochs=7, budget_unit="epochs"), 1000)
    with pytest.raises(ValueError, match="must be a whole number with budget_unit=epochs"):
        TrainConfig(epochs=2.5, budget_unit="epochs")


def allocate_before(weights: list[float], epochs: int) -> list[int]:
    """The epoch allocator before FLOPs budgets existed, verbatim (the regression reference)."""
    if epochs < len(weights):
        raise ValueError("too small")
    total = sum(weights)
    targets = [w / total * epochs for w in weights]
    alloc = [max(1, math.floor(t)) for t in targets]
    while sum(alloc) > epochs:
        i = max((i for i, a in enumerate(alloc) if a > 1), key=lambda i: alloc[i] - targets[i])
        alloc[i] -= 1
    while sum(alloc) < epochs:
        i = max(range(len(alloc)), key=lambda i: targets[i] - alloc[i])
        alloc[i] += 1
    return alloc


def test_epochs_unit_plans_exactly_as_before():
    rng = random.Random(0)
    for _ in range(2000):
        n = rng.randint(1, 9)
        weights = [rng.choice([1, 2, 3, rng.uniform(0.2, 1.0)]) for _ in range(n)]
        epochs = rng.randint(n, 40)
        assert allocate_epochs(weights, epochs) == allocate_before(weights, epochs)
    # the methods' plans go through it: greedy's stage weights, layer_to_layer's splits + finetune
    greedy = TrainConfig(
        model="seed_cnn", method="greedy", epochs=9, budget_unit="epochs",
        params={"blocks_per_stage": 2, "epochs_per_block": [1, 1, 2]},
    )  # fmt: skip
    assert run_plan(greedy, 1000).stage_epochs == allocate_before([1, 1, 2], 9) == [2, 2, 5]
    l2l = TrainConfig(
        model="vgg11", method="layer_to_layer", epochs=10, budget_unit="epochs",
        params={"finetune_frac": 0.3, "stage_fracs": [1, 3, 1, 1, 1]},
    )  # fmt: skip
    weights = [f / 7 * 0.7 for f in (1, 3, 1, 1, 1)] + [0.3]
    assert run_plan(l2l, 1000).stage_epochs == allocate_before(weights, 10)


def test_full_caches_are_emptied_without_losing_the_stages_being_counted(monkeypatch):
    """With room for one entry per cache, counting a 3-stage plan empties the caches while it
    fills them, and still returns every stage's cost, the same as with room for all."""
    config = TrainConfig(model="vgg11", method="layer_to_layer", epochs=8, width=0.125)
    roomy = stage_costs(config)
    for cache in ("_stage_cache", "_layout_cache"):
        monkeypatch.setattr(compute, cache, {})
    monkeypatch.setattr(compute, "_CACHE_LIMIT", 1)
    stages, costs = stage_costs(config)
    assert len(stages) >= 3 and (stages, costs) == roomy
