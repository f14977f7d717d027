"""One benchmark workload: a (model, method) trained for a fixed number of batches per stage through
the Method API.

It is the training code path of `trainables.training.fit` (same model/method construction,
`method.train_batches` and `train_step`), without evaluation, so the measured time is training
only: per stage, one untimed warm-up epoch of `warmup` batches, then one timed epoch of
`batches` batches. Augmentation is off so the time is the method's, not the data pipeline's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from benchmarks.allocator import AllocatorTrace
from benchmarks.synthetic import synthetic_splits
from trainables.compute import count_flops as flops_counted
from trainables.config import TrainConfig, check_choice
from trainables.data import Batcher, ImageSet
from trainables.measure import PeakMemory, Timer, resolve_device
from trainables.methods import Method, Stage
from trainables.methods.aux_heads import GREEDY_HEADS
from trainables.training import build_model_and_method, uses_channels_last

# Epoch budget given to every method (whole epochs, budget_unit "epochs", so every method's stages
# split it alike): it only sets schedule lengths and the epochs per stage (the weights of greedy's
# per-block times); it must allow one epoch per stage of any model.
PLAN_EPOCHS = 100
STAGE_CHOICES = ("all", "first")


@dataclass(frozen=True)
class MethodSetup:
    """How a bench row trains: its method, parameters and which stages of the plan are measured."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    stages: str = "all"


# greedy, one row per auxiliary head: one stage per block, every block measured, memory the peak
# over all of them
GREEDY_HEAD_ROWS = {
    f"greedy:{head}": MethodSetup("greedy", {"aux_head": head}) for head in GREEDY_HEADS
}
METHOD_SETUPS: dict[str, MethodSetup] = {
    "standard": MethodSetup("standard"),
    # one stage at the mid split (s = round(0.5 L)): the first stage of the plan, no finetune
    "layer_to_layer": MethodSetup(
        "layer_to_layer", {"split_ratio": 0.5, "finetune_frac": 0.0}, stages="first"
    ),
    **GREEDY_HEAD_ROWS,
}


@dataclass(frozen=True)
class Workload:
    """What to run: model, bench row (`method`, a key of METHOD_SETUPS) and size; `config()` turns
    it into the TrainConfig fit would get."""

    model: str
    method: str
    width: float
    batch_size: int
    batches: int
    warmup: int = 2
    device: str = "auto"
    compile: bool = False
    seed: int = 0

    def setup(self) -> MethodSetup:
        check_choice("method", self.method, tuple(METHOD_SETUPS))
        return METHOD_SETUPS[self.method]

    def config(self) -> TrainConfig:
        return TrainConfig(
            model=self.model,
            method=self.setup().method,
            epochs=PLAN_EPOCHS,
            budget_unit="epochs",
            batch_size=self.batch_size,
            width=self.width,
            seed=self.seed,
            augment=False,
            device=self.device,
            params=dict(self.setup().params),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StageRun:
    """One measured stage: timed-epoch wall and process-CPU seconds, images, the stage's peak memory
    (MB above the data).

    CPU seconds (all threads of this process) are less sensitive than wall time to other
    processes competing for the cores of a shared machine.
    """

    index: int
    epochs: int
    info: dict[str, Any]
    seconds: float
    cpu_seconds: float
    images: int
    peak_mem_mb: float
    alloc_mb: float = float("nan")
    flops: float = float("nan")  # floating-point operations of the timed epoch, when counted


def run_workload(work: Workload, trace: bool = False, count_flops: bool = False) -> list[StageRun]:
    """Train the selected stages of `work`; `trace`: count exact CPU allocator bytes;
    `count_flops`: FLOPs per stage."""
    config = work.config()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    data = synthetic_splits((work.warmup + work.batches) * work.batch_size, seed=work.seed).to(
        device
    )
    n_warm = work.warmup * work.batch_size
    warm = ImageSet(data.train.x[:n_warm], data.train.y[:n_warm])
    splits = dataclasses.replace(data, train=ImageSet(data.train.x[n_warm:], data.train.y[n_warm:]))
    batcher = Batcher(splits, channels_last=uses_channels_last(config, device))
    memory = PeakMemory(device)  # baseline: data on the device, no model yet
    allocator = AllocatorTrace() if trace else None
    with allocator if allocator is not None else contextlib.nullcontext():
        method = build_model_and_method(config, splits, device)
        compiled: weakref.WeakSet[nn.Module] | None = weakref.WeakSet() if work.compile else None
        runs = [
            _run_stage(
                method, stage, warm, splits.train, batcher, memory, allocator, count_flops, compiled
            )
            for stage in select_stages(method.plan(), work.setup().stages)
        ]
    if allocator is not None:
        for run in runs:
            run.alloc_mb = allocator.peak_mb(f"stage{run.index}")
    return runs


def _run_stage(
    method: Method,
    stage: Stage,
    warm: ImageSet,
    timed: ImageSet,
    batcher: Batcher,
    memory: PeakMemory,
    allocator: AllocatorTrace | None,
    count_flops: bool,
    compiled: weakref.WeakSet[nn.Module] | None,
) -> StageRun:
    generator = torch.Generator().manual_seed(method.config.seed + stage.index)
    timer = Timer(method.device)
    memory.reset()
    with (
        allocator.mark(f"stage{stage.index}") if allocator is not None else contextlib.nullcontext()
    ):
        method.start_stage(stage)
        if compiled is not None:
            compile_blocks(method, compiled)
        method.train_mode()
        _epoch(method, warm, batcher, generator)
        timer.start()
        cpu_start = time.process_time()
        if count_flops:  # the counter's own overhead makes this run's times meaningless
            images, flops = flops_counted(lambda: _epoch(method, timed, batcher, generator))
        else:
            images, flops = _epoch(method, timed, batcher, generator), float("nan")
        seconds = timer.stop()
        cpu_seconds = time.process_time() - cpu_start
    return StageRun(
        stage.index,
        stage.epochs,
        dict(stage.info),
        seconds,
        cpu_seconds,
        images,
        memory.peak_mb(),
        flops=flops,
    )


def _epoch(method: Method, data: ImageSet, batcher: Batcher, generator: torch.Generator) -> int:
    images = 0
    for x, y in method.train_batches(data, batcher, generator):
        method.train_step(x, y)
        images += len(y)
    return images


def select_stages(plan: list[Stage], which: str) -> list[Stage]:
    """All stages of the plan, or only the first."""
    check_choice("stages", which, STAGE_CHOICES)
    return list(plan) if which == "all" else plan[:1]


def compile_blocks(method: Method, compiled: weakref.WeakSet[nn.Module]) -> None:
    """torch.compile in place every block, the head and the auxiliary heads not yet in `compiled`
    (updated).

    Called after each `start_stage`: layer_to_layer builds its stage's head there."""
    for module in [*method.model.blocks, method.model.head, *method.aux_modules().values()]:
        if module not in compiled:
            module.compile()
            compiled.add(module)
