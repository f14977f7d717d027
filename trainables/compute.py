"""A run's training compute, counted before it starts: the plan that gives every stage its epochs.

Counting: torch's `FlopCounterMode` over what a method really runs for one batch of each stage,
on the meta device (shapes only: no data, no memory, well under a second): the method's own
`train_batches` (a frozen prefix's forward, unless it is cached) and `train_step` (forward,
backward, optimiser step), so a new method or head needs no counting code of its own. Its
convention: convolutions and matrix multiplications, 2 FLOPs per multiply-add, forward and
backward (a frozen or detached input gets no input gradient); element-wise work (activations,
normalisation, pooling, losses, optimiser updates) is not counted. Work a stage does once (greedy's
`cache_features` runs the frozen prefix over the training set once per stage, not every epoch)
is counted once per stage.

The unit is standard training's epoch of the same model and data (`standard_epoch_flops`).
With `budget_unit="flops"`, `epochs = E` buys the FLOPs of E such epochs and each stage gets whole
epochs, at least one, in proportion to the method's stage weights, scaled so that the plan costs
about E (`methods.budget.allocate_epochs`); with `budget_unit="epochs"`, E is a whole number of
epochs, split over the stages by the same weights, as the layer-to-layer paper compares.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

from trainables.config import TrainConfig
from trainables.data import NUM_CLASSES, Batcher, DataSplits, ImageSet
from trainables.errors import UserError
from trainables.methods import Method, Stage, build_method, get_method
from trainables.methods.budget import allocate_epochs
from trainables.models import build_model

T = TypeVar("T")

BUDGET_TOLERANCE = 0.1  # a plan of one epoch per stage may cost this share more than the budget
INPUT_SHAPE = (3, 32, 32)  # every data set's images (trainables.data)
# The TrainConfig fields that can change a stage's FLOPs per image (besides the method's params).
COST_FIELDS = ("model", "method", "dataset", "width")
METHOD_LOGGER = "trainables.methods"
_CACHE_LIMIT = 4096  # entries each cache keeps per process (the search asks for many plans)
_stage_cache: dict[tuple[str, str], StageCost] = {}
_layout_cache: dict[str, tuple[list[Stage], str]] = {}


@dataclass(frozen=True)
class StageCost:
    """FLOPs per training image of one stage: every epoch, and once per stage (a cached prefix)."""

    epoch: float
    once: float = 0.0


@dataclass
class RunPlan:
    """The epochs of each stage of a run and what they cost, in FLOPs and in standard epochs."""

    budget_unit: str
    budget: float  # config.epochs: standard epochs of FLOPs ("flops") or whole epochs ("epochs")
    stage_epochs: list[int]
    stage_flops: list[float]  # one epoch of each stage
    stage_once_flops: list[float]  # once in each stage, at its first epoch (greedy's feature cache)
    standard_epoch_flops: float  # one epoch of standard training: the unit of compute_epochs

    @property
    def total_epochs(self) -> int:
        return sum(self.stage_epochs)

    @property
    def planned_flops(self) -> float:
        return self.flops_after(self.total_epochs)

    @property
    def compute_epochs(self) -> float:
        """The whole plan's FLOPs in standard epochs."""
        return self.planned_flops / self.standard_epoch_flops

    @property
    def charge(self) -> float:
        """What a whole run costs in the budget's unit (what a search is charged for it)."""
        return self.compute_epochs if self.budget_unit == "flops" else float(self.total_epochs)

    def flops_after(self, epochs: int) -> float:
        """The FLOPs of the plan's first `epochs` epochs (stages in order)."""
        flops, left = 0.0, epochs
        for count, per_epoch, once in zip(
            self.stage_epochs, self.stage_flops, self.stage_once_flops
        ):
            if left <= 0:
                break
            flops += once + min(left, count) * per_epoch
            left -= count
        return flops

    def compute_after(self, epochs: int) -> float:
        """`flops_after(epochs)` in standard epochs."""
        return self.flops_after(epochs) / self.standard_epoch_flops


def count_flops(run: Callable[[], T]) -> tuple[T, float]:
    """`run()` under torch's FlopCounterMode: its result and the FLOPs it ran (module docstring).
    Grad is on, so a training step counts its backward even when the caller is under no_grad."""
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        result = run()
    return result, float(counter.get_total_flops())


def run_plan(config: TrainConfig, num_train: int) -> RunPlan:
    """The epochs per stage of `config` on `num_train` training images and their FLOPs (no data).

    Raises a UserError when one epoch per stage does not fit the budget: more stages than epochs
    ("epochs"), or more than (1 + BUDGET_TOLERANCE) x `epochs` standard epochs of FLOPs
    ("flops")."""
    stages, costs, standard = _costs(config)
    check_fits(config, stages, costs, standard)
    images = epoch_images(num_train, config.batch_size)
    unit = standard * images
    flops = [cost.epoch * images for cost in costs]
    once = [cost.once * num_train for cost in costs]
    weights = [stage.weight for stage in stages]
    if config.budget_unit == "epochs":
        epochs = allocate_epochs(weights, int(config.epochs))
    else:  # what each stage does once comes off the budget first
        rest = config.epochs - sum(once) / unit
        epochs = allocate_epochs(weights, rest, [f / unit for f in flops])
    return RunPlan(config.budget_unit, config.epochs, epochs, flops, once, unit)


def fits_budget(config: TrainConfig) -> bool:
    """Whether one epoch per stage of `config` fits its budget (what the search spaces keep to)."""
    return _fits(config, *_costs(config))


def _costs(config: TrainConfig) -> tuple[list[Stage], list[StageCost], float]:
    """The stages of `config`, their FLOPs per image and standard's per image (the unit)."""
    stages, costs = stage_costs(config)
    return stages, costs, stage_costs(standard_config(config))[1][0].epoch


def _least(costs: list[StageCost], standard: float) -> float:
    """One epoch of every stage, in standard epochs."""
    return sum(cost.epoch + cost.once for cost in costs) / standard


def _fits(
    config: TrainConfig, stages: list[Stage], costs: list[StageCost], standard: float
) -> bool:
    if config.budget_unit == "epochs":
        return len(stages) <= config.epochs
    return _least(costs, standard) <= config.epochs * (1 + BUDGET_TOLERANCE)


def check_fits(
    config: TrainConfig, stages: list[Stage], costs: list[StageCost], standard: float
) -> None:
    """Raise a UserError naming the budget, what one epoch per stage needs and what to do."""
    if _fits(config, stages, costs, standard):
        return
    hint = get_method(config.method).FEWER_STAGES
    where = f"{config.method} on {config.model} has {len(stages)} stages"
    fewer = f" or {hint}" if hint else ""
    if config.budget_unit == "epochs":
        raise UserError(
            f"epochs={config.epochs} is too small: {where} and every stage needs >= 1 epoch; "
            f"use epochs >= {len(stages)}{fewer}"
        )
    least = _least(costs, standard)
    raise UserError(
        f"epochs={config.epochs} is too small: {where}, and one epoch of each costs the FLOPs of "
        f"{least:.2f} standard epochs (budget_unit=flops allows {BUDGET_TOLERANCE:.0%} more); "
        f"use epochs >= {math.ceil(100 * least / (1 + BUDGET_TOLERANCE)) / 100:g}{fewer}"
    )


def standard_config(config: TrainConfig) -> TrainConfig:
    """The same model and data trained by standard: the reference of the FLOPs unit."""
    return dataclasses.replace(config, method="standard", params={})


def epoch_images(num_train: int, batch_size: int) -> int:
    """Training images one epoch runs (trainables.data.Batcher drops a last partial batch)."""
    return max(1, num_train // batch_size) * min(batch_size, num_train)


def stage_costs(config: TrainConfig) -> tuple[list[Stage], list[StageCost]]:
    """The stages of `config` (epochs not set) and their FLOPs per image; counted stages are cached
    by what decides their cost (COST_FIELDS, the method's params except its `PLAN_KNOBS`, the
    stage's info), and each config's layout by the whole config (a search checks the same configs
    many times, and building the meta model and method costs more than the lookup)."""
    method = None
    config_key = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    layout = _layout_cache.get(config_key)
    if layout is None:
        method = meta_method(config)
        layout = (method.layout(), cost_key(config, method))
        _bounded(_layout_cache)[config_key] = layout
    stages, key = layout
    infos = [_info_key(s) for s in stages]
    costs = [_stage_cache.get((key, info)) for info in infos]
    missing = [i for i, cost in enumerate(costs) if cost is None]
    if missing:
        counted = count_stages(config, method or meta_method(config), [stages[i] for i in missing])
        for i, cost in zip(missing, counted):
            costs[i] = cost
            _bounded(_stage_cache)[key, infos[i]] = cost
    return [dataclasses.replace(s) for s in stages], costs


def _bounded(cache: dict) -> dict:
    """`cache`, emptied first when it holds more than _CACHE_LIMIT entries."""
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    return cache


def meta_method(config: TrainConfig) -> Method:
    """The method of `config` around a shape-only model on the meta device (one batch per epoch)."""
    meta = torch.device("meta")
    classes = NUM_CLASSES[config.dataset]
    with meta:
        model = build_model(config.model, classes, config.width)
        method = build_method(config, model, classes, meta, steps_per_epoch=1)
        method.aux_modules().to(meta)
    return method


def count_stages(config: TrainConfig, method: Method, stages: list[Stage]) -> list[StageCost]:
    """FLOPs per image of `stages`, each started in order and run for two one-batch epochs: the
    second epoch is the per-epoch cost, what the first did beyond it the once-per-stage cost. Only
    a method that feeds its own inputs (`train_batches`, e.g. greedy's cached features) can do work
    once per stage; for the others one epoch is counted (half the time)."""
    feeds_own_inputs = type(method).train_batches is not Method.train_batches
    method.stage_epochs = [1] * len(method.layout())
    meta = torch.device("meta")
    batch = max(2, config.batch_size)
    images = ImageSet(
        torch.empty(batch, *INPUT_SHAPE, dtype=torch.uint8, device=meta),
        torch.zeros(batch, dtype=torch.long, device=meta),
    )
    splits = DataSplits(
        "meta", images, images, images, method.num_classes, (0.5,) * 3, (0.5,) * 3, True
    )
    batcher = Batcher(splits)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> int:
        seen = 0
        for x, y in method.train_batches(images, batcher, generator):
            method.train_step(x, y)
            seen += len(y)
        return seen

    costs = []
    with torch.random.fork_rng(devices=[]):  # counting draws no random number a run would get
        for stage in stages:
            # a stage's start is not logged as if it trained; heads it builds go to the meta device
            with _quiet(METHOD_LOGGER), meta:
                method.start_stage(dataclasses.replace(stage, epochs=1))
            method.train_mode()
            seen, first = count_flops(epoch)
            later = count_flops(epoch)[1] if feeds_own_inputs else first
            costs.append(StageCost(later / seen, (first - later) / batch))
    return costs


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Logger `name` at WARNING for the duration."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def cost_key(config: TrainConfig, method: Method) -> str:
    """What decides a stage's FLOPs per image besides the stage itself."""
    params = {k: v for k, v in config.params.items() if k not in method.PLAN_KNOBS}
    fields = {name: getattr(config, name) for name in COST_FIELDS}
    return json.dumps({**fields, "params": params}, sort_keys=True, default=str)


def _info_key(stage: Stage) -> str:
    return json.dumps(stage.info, sort_keys=True, default=str)
