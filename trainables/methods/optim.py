"""The shared optimiser and per-step learning-rate schedule (DESIGN §3)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from trainables.config import TrainConfig


def make_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW; weight decay applies to every parameter."""
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int, anneal_frac: float = 1.0
) -> torch.optim.lr_scheduler.LRScheduler:
    """A schedule stepped once per batch over `total_steps` batches.

    `config.schedule` runs over the last `anneal_frac` of the steps; before that the learning rate
    holds at `config.lr` (greedy's short stages use it, see docs/greedy.md). onecycle has its own
    warm-up, so it only runs over all the steps.
    """
    check_anneal_frac(anneal_frac, config.schedule)
    total_steps = max(1, total_steps)
    hold_steps = min(total_steps - 1, round(total_steps * (1.0 - anneal_frac)))
    schedule = _schedule(optimizer, config, total_steps - hold_steps)
    if hold_steps <= 0:
        return schedule
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [_constant(optimizer), schedule], milestones=[hold_steps])


def check_anneal_frac(anneal_frac: float, schedule: str) -> None:
    """A hold before the schedule (anneal_frac < 1) suits cosine and constant, not onecycle's own warm-up."""
    if anneal_frac < 1.0 and schedule == "onecycle":
        raise ValueError(f"anneal_frac={anneal_frac} needs schedule=cosine or constant; onecycle warms up and "
                         "anneals over all its steps (use anneal_frac=1 with it)")


def _schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps + 1)
    return _constant(optimizer)


def _constant(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate as the optimiser has it: `schedule=constant`, and the hold before an anneal."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
