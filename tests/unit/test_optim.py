"""The shared schedule shape (warm-up, hold, anneal) that make_scheduler builds for every method."""

from __future__ import annotations

import pytest
import torch

from trainables.config import TrainConfig
from trainables.methods.optim import WARMUP_START_FACTOR, make_scheduler

LR = 0.1


def step_lrs(steps: int, default_anneal_frac: float = 1.0, **shape: float | str) -> list[float]:
    """The learning rate of every step, as the scheduler sets it."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=LR)
    scheduler = make_scheduler(optimizer, TrainConfig(lr=LR, **shape), steps, default_anneal_frac)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warm_up_then_hold_then_cosine():
    """20 steps, warmup_frac 0.2, anneal_frac 0.5: 4 rising steps, lr held for 8, cosine over the
    last 8."""
    lrs = step_lrs(20, warmup_frac=0.2, anneal_frac=0.5)
    assert lrs[0] == pytest.approx(LR * WARMUP_START_FACTOR)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5]))
    assert lrs[4:13] == pytest.approx([LR] * 9)  # the hold, and the cosine's first step at lr
    assert all(a > b for a, b in zip(lrs[12:], lrs[13:])) and lrs[-1] < 0.1 * LR


def test_unset_anneal_frac_is_the_methods_default_and_a_set_one_wins():
    assert step_lrs(8, default_anneal_frac=0.25)[:7] == pytest.approx([LR] * 7)  # hold 6, anneal 2
    assert (
        step_lrs(8, default_anneal_frac=0.25, anneal_frac=1.0)[1] < LR
    )  # cosine from the first step
    assert step_lrs(8) == step_lrs(8, anneal_frac=1.0)


def test_constant_schedule_keeps_the_warm_up():
    lrs = step_lrs(10, warmup_frac=0.3, schedule="constant")
    assert lrs[0] < lrs[1] < lrs[2] < LR and lrs[3:] == pytest.approx([LR] * 7)
