"""The shared optimiser and per-step learning-rate schedule (docs/design.md, the methods)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from trainables.config import TrainConfig

WARMUP_START_FACTOR = 0.01  # the warm-up's first step runs at 1% of lr


def make_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW; weight decay applies to every parameter."""
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    total_steps: int,
    default_anneal_frac: float = 1.0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The shared schedule shape, stepped once per batch over `total_steps` batches: warm-up, hold,
    anneal.

    A linear warm-up to `config.lr` over the first `config.warmup_frac` of the steps, then
    `config.lr` held, then `config.schedule` over the last `anneal_frac` of the steps after the
    warm-up (so every pair of fractions is valid). `config.anneal_frac` unset means
    `default_anneal_frac`, the calling method's default (greedy's short stages hold longest,
    docs/greedy.md). A method whose stages restart the schedule calls this once per stage, so the
    shape applies per stage. onecycle has its own warm-up and anneal (TrainConfig refuses a shape
    with it), so it runs over all the steps.
    """
    total_steps = max(1, total_steps)
    warmup_steps = min(total_steps - 1, round(total_steps * config.warmup_frac))
    rest = total_steps - warmup_steps
    hold_steps = min(rest - 1, round(rest * (1.0 - anneal_frac(config, default_anneal_frac))))
    phases: list[torch.optim.lr_scheduler.LRScheduler] = []
    if warmup_steps > 0:
        phases.append(
            torch.optim.lr_scheduler.LinearLR(
                optimizer, start_factor=WARMUP_START_FACTOR, total_iters=warmup_steps
            )
        )
    if hold_steps > 0:
        phases.append(_constant(optimizer))
    phases.append(_schedule(optimizer, config, rest - hold_steps))
    if len(phases) == 1:
        return phases[0]
    milestones = [warmup_steps] * (warmup_steps > 0) + [warmup_steps + hold_steps] * (
        hold_steps > 0
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, phases, milestones=milestones)


def anneal_frac(config: TrainConfig, default: float) -> float:
    """The annealed share of the steps after warm-up: the config's, else the method's default (1
    with onecycle)."""
    if config.anneal_frac is not None:
        return config.anneal_frac
    return 1.0 if config.schedule == "onecycle" else default


def _schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps + 1
        )
    return _constant(optimizer)


def _constant(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate as the optimiser has it: `schedule=constant`, and the hold before an
    anneal."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
