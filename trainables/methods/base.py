"""The interface every training method implements; `trainables.training.fit` drives it.

A method is a sequence of stages (standard: one; layer_to_layer: one per split, then an
optional finetune; greedy: one per block). The shared loop owns epochs, evaluation,
measurement, checkpoints and callbacks; a method owns its losses and optimisers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from trainables.config import TrainConfig
from trainables.data import Batcher, ImageSet
from trainables.errors import UserError
from trainables.models import BlockNet


@dataclass
class Stage:
    """One phase of training: `epochs` epochs with a fixed structure described by `info`.

    `weight`: the stage's share of the run's epochs, relative to the other stages (the run plan,
    trainables.compute, turns the weights and the budget into whole epochs)."""

    index: int
    epochs: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass
class MethodParams:
    """Base for a method's own knobs; `from_dict` rejects unknown keys by name."""

    @classmethod
    def from_dict(cls, values: dict[str, Any], method: str) -> MethodParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            valid = ", ".join(sorted(known)) or "(none)"
            raise UserError(
                f"unknown parameter(s) {', '.join(unknown)} for method {method!r}; valid: {valid}"
            )
        return cls(**values)

    def resolved(self) -> dict[str, Any]:
        """Every knob with the value a run trains with (a default that depends on other knobs
        filled in): what a run records as its params."""
        return dataclasses.asdict(self)


class Method(ABC):
    """Owns the losses, optimisers and any auxiliary modules of one training method."""

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    optimizer: torch.optim.Optimizer | None = None  # set by start_stage; `current_lr` reads it
    # knobs that only decide which stages there are and their weights, never a stage's FLOPs per
    # image given its `info` (trainables.compute counts a stage once for all their values)
    PLAN_KNOBS: ClassVar[tuple[str, ...]] = ()
    FEWER_STAGES: ClassVar[str] = ""  # how to ask for fewer stages, for a budget that is too small

    @classmethod
    def variant(cls, params: MethodParams) -> type[Method]:
        """The class that trains with `params` (a method with variants picks one by its knobs)."""
        return cls

    def __init__(
        self,
        config: TrainConfig,
        model: BlockNet,
        num_classes: int,
        device: torch.device,
        steps_per_epoch: int,
        stage_epochs: list[int] | None = None,
    ):
        self.config = config
        self.model = model
        self.num_classes = num_classes
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.stage_epochs = stage_epochs  # None: planned from the config when first asked (`plan`)
        self.params = self.Params.from_dict(config.params, self.name)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    # --- structure -------------------------------------------------------------------
    @abstractmethod
    def layout(self) -> list[Stage]:
        """The stages in order with their weights (`Stage.weight`), before they get epochs."""

    def plan(self) -> list[Stage]:
        """The stages with their whole epochs: those the method was built with, else the run plan of
        its config (trainables.compute.run_plan, which spends the budget `config.epochs`)."""
        if self.stage_epochs is None:
            from trainables.compute import run_plan

            images = self.steps_per_epoch * self.config.batch_size
            self.stage_epochs = run_plan(self.config, images).stage_epochs
        return [
            dataclasses.replace(stage, epochs=epochs)
            for stage, epochs in zip(self.layout(), self.stage_epochs, strict=True)
        ]

    def total_epochs(self) -> int:
        """The epochs of the whole plan (a schedule that spans every stage runs over them)."""
        return sum(stage.epochs for stage in self.plan())

    def aux_modules(self) -> nn.ModuleDict:
        """Modules besides the model that are trained and checkpointed (auxiliary heads)."""
        return nn.ModuleDict()

    @abstractmethod
    def start_stage(self, stage: Stage) -> None:
        """Prepare a stage: which parameters train, optimisers and schedules."""

    def end_stage(self, stage: Stage, val_metrics: dict[str, float]) -> bool:
        """Called after a stage's last epoch; returning False ends training early."""
        return True

    # --- one batch ---------------------------------------------------------------------
    def train_batches(
        self, data: ImageSet, batcher: Batcher, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The (input, label) batches of one epoch; a method may feed other inputs (greedy's
        cached features)."""
        return batcher.train_batches(
            data, self.config.batch_size, generator, augment=self.config.augment
        )

    @abstractmethod
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward, backward and optimiser step on one batch; returns detached losses ('loss'
        required)."""

    def train_mode(self) -> None:
        self.model.train()
        self.aux_modules().train()

    def eval_mode(self) -> None:
        self.model.eval()
        self.aux_modules().eval()

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits of the network as it stands ('main'), plus any other heads worth scoring."""
        return {"main": self.model(x)}

    def stage_metrics(self, stage: Stage) -> dict[str, Any]:
        """Per-epoch metrics that describe the current stage (e.g. stage, split)."""
        return {"stage": stage.index}

    def final_metrics(self) -> dict[str, Any]:
        return {}

    def current_lr(self) -> float:
        """The learning rate of `optimizer`'s first param group now (NaN before a stage)."""
        return math.nan if self.optimizer is None else float(self.optimizer.param_groups[0]["lr"])

    # --- the classifier training ends with (ranked, reported as val_acc, tested) ---------
    def deployed_modules(self) -> list[nn.Module]:
        """The modules `predict()['main']` runs once training has ended (params_deployed);
        default: the model."""
        return [self.model]

    def deployed_history(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The epochs whose val_acc scored that classifier (final val_acc, best_val_acc);
        default: all."""
        return history

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `aux_modules()` from a checkpoint's `aux` entry (a method whose heads come and
        go builds them)."""
        self.aux_modules().load_state_dict(state)

    # --- helpers -----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when `amp` is on; a no-op elsewhere."""
        if not (self.config.amp and self.device.type == "cuda"):
            return contextlib.nullcontext()  # also on the meta device, which autocast refuses
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
