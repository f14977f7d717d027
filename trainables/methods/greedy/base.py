"""What the greedy family shares: its knobs, block groups, auxiliary heads, one optimiser per
trained group and the BN warm-up. `Greedy.variant` picks the variant that the knobs ask for."""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainables.config import TrainConfig, check_choice, check_range
from trainables.errors import UserError
from trainables.methods.aux_heads import GREEDY_HEADS, build_greedy_head
from trainables.methods.base import Method, MethodParams, Stage
from trainables.methods.optim import make_optimizer, make_scheduler
from trainables.models import BlockNet

log = logging.getLogger(__name__)

FINAL_HEADS = ("aux", "model")
DEFAULT_K = 3  # layerCNN's cifar.py default --nlin 2 (k=3), their best CIFAR-10 result
BN_MOMENTUM = 0.1  # torch's default, reached after the warm-up below
ANNEAL_FRAC = (
    0.25  # greedy's anneal_frac default: each stage anneals over its last quarter (docs/greedy.md)
)


@dataclass
class GreedyParams(MethodParams):
    """Knobs of the greedy family (defaults: sequential greedy, one block per stage, layerCNN's k=3
    head on every block, the last block's head deployed)."""

    aux_head: str | None = None  # layercnn | pooled | dgl; None: dgl if decoupled, else layercnn
    aux_k: int | None = None  # layercnn/pooled: the paper's k, 1..3 (k-1 hidden layers); None: 3
    width_aux: int | None = None  # layercnn/pooled: hidden channels at model width 1; None: block's
    final_head: str = "aux"  # aux: the last block's own aux head is deployed; model: the net's head
    blocks_per_stage: int = (
        1  # blocks trained together as one group (one stage each when sequential)
    )
    epochs_per_block: list[float] | None = (
        None  # relative epoch weights, one per stage; None = equal split
    )
    decoupled: bool = False  # DGL: all groups at once, each on detached input, own optimiser
    auto_depth: bool = False  # stop adding groups when val accuracy stops improving (Xu 2023)
    min_gain: float = 0.005  # auto_depth: smallest val accuracy gain that counts as an improvement
    patience: int = 1  # auto_depth: groups without such a gain before stopping
    cache_features: bool = False  # compute the frozen prefix once per stage (no augmentation then)
    cache_max_mb: float | None = None  # cache size limit; None = half the device's free memory

    def __post_init__(self) -> None:
        check_choice("aux_head", self.head_kind, GREEDY_HEADS)
        check_choice("final_head", self.final_head, FINAL_HEADS)
        if self.head_kind == "dgl":
            for key in ("aux_k", "width_aux"):
                if getattr(self, key) is not None:
                    raise UserError(
                        f"{key}={getattr(self, key)!r} shapes the layercnn and pooled heads; "
                        "aux_head=dgl has DGL's fixed design (leave it unset, or choose one of: "
                        "layercnn, pooled)"
                    )
        else:
            check_choice("aux_k", self.k, (1, 2, 3))
            if self.width_aux is not None:
                check_range("width_aux", self.width_aux, 1, None)
        check_range("blocks_per_stage", self.blocks_per_stage, 1, None)
        check_range("min_gain", self.min_gain, 0.0, None)
        check_range("patience", self.patience, 1, None)
        if self.cache_max_mb is not None:
            check_range("cache_max_mb", self.cache_max_mb, 0.0, None, low_open=True)
        if self.epochs_per_block is not None:
            weights = self.epochs_per_block
            if (
                not isinstance(weights, (list, tuple))
                or not weights
                or not all(isinstance(w, (int, float)) and w > 0 for w in weights)
            ):
                raise UserError(
                    f"epochs_per_block={weights!r} is not valid; give a non-empty list of positive "
                    "relative weights, one per stage (e.g. 1,1,2), or leave it unset for an equal "
                    "split"
                )
        if self.decoupled:
            for key in ("auto_depth", "cache_features", "epochs_per_block"):
                if getattr(self, key) not in (False, None):
                    raise UserError(
                        f"{key}={getattr(self, key)!r} needs sequential stages; it is not valid "
                        "with decoupled=true (one stage, all blocks at once)"
                    )

    @property
    def head_kind(self) -> str:
        """The auxiliary head: `aux_head`, or the variant's default (DGL's own net for DGL)."""
        if self.aux_head is not None:
            return self.aux_head
        return "dgl" if self.decoupled else "layercnn"

    @property
    def k(self) -> int:
        """The paper's k of a layercnn/pooled head."""
        return DEFAULT_K if self.aux_k is None else self.aux_k

    def resolved(self) -> dict[str, Any]:
        """The knobs with the head that trains: its kind, and its k where it has one."""
        has_k = self.head_kind != "dgl"
        return {
            **super().resolved(),
            "aux_head": self.head_kind,
            "aux_k": self.k if has_k else None,
        }


def block_groups(num_blocks: int, blocks_per_stage: int) -> list[tuple[int, int]]:
    """[start, stop) block ranges of `blocks_per_stage` blocks each (the last may be shorter)."""
    check_range("blocks_per_stage", blocks_per_stage, 1, num_blocks)
    return [
        (start, min(start + blocks_per_stage, num_blocks))
        for start in range(0, num_blocks, blocks_per_stage)
    ]


def head_width(width_aux: int, model_width: float) -> int:
    """Channels of a head's hidden layers: `width_aux` scaled by the model's width multiplier,
    like its blocks."""
    return max(1, round(width_aux * model_width))


class Greedy(Method):
    """Blocks trained in groups, each group with a local loss through its own classifier.

    Every group gets an auxiliary head (`build_greedy_head`) on its last block's output, the last
    group included, and the classifier deployed is all blocks followed by the last group's head, as
    the authors' code trains and deploys it. With `final_head=model` the last group is classified by
    the network's own `head` instead, so the trained network is exactly the standard architecture.
    Each trained group has its own optimiser and schedule. Subclasses decide which groups train
    when.
    """

    name = "greedy"
    Params = GreedyParams
    params: GreedyParams
    # a stage's blocks (its info) decide its cost, not how the others are grouped
    PLAN_KNOBS = ("blocks_per_stage", "epochs_per_block", "min_gain", "patience")
    FEWER_STAGES = "a larger blocks_per_stage"

    @classmethod
    def variant(cls, params: MethodParams) -> type[Method]:
        """Decoupled (DGL), auto_depth, or sequential greedy, as `params` select."""
        from trainables.methods.greedy import variant_class  # the variants import this module

        return variant_class(params)

    def __init__(
        self,
        config: TrainConfig,
        model: BlockNet,
        num_classes: int,
        device: torch.device,
        steps_per_epoch: int,
        stage_epochs: list[int] | None = None,
    ):
        super().__init__(config, model, num_classes, device, steps_per_epoch, stage_epochs)
        p = self.params
        self.groups = block_groups(model.num_blocks, p.blocks_per_stage)
        self.last = len(self.groups) - 1
        self.path_group = self.last  # the group whose classifier gives 'main' (`deployed_modules`)
        self.shapes = model.feature_shapes()
        self._head_width = None if p.width_aux is None else head_width(p.width_aux, config.width)
        self.heads = nn.ModuleDict()  # the aux heads the current stage needs (`_use_heads`)
        self.stage_index = 0
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[torch.optim.lr_scheduler.LRScheduler] = []
        self._norms: list[nn.modules.batchnorm._BatchNorm] = []
        self._norm_steps = 0

    # --- structure -------------------------------------------------------------------
    def aux_modules(self) -> nn.ModuleDict:
        return self.heads

    def has_aux_head(self, group: int) -> bool:
        """Every group has an auxiliary head, but the last one under `final_head=model`."""
        return group != self.last or self.params.final_head == "aux"

    def new_head(self, group: int) -> nn.Module:
        """A freshly initialised auxiliary head for `group`'s last block (DGL's final net on the
        last group)."""
        p = self.params
        shape = self.shapes[self.groups[group][1] - 1]
        return build_greedy_head(
            shape, self.num_classes, p.head_kind, p.k, self._head_width, final=group == self.last
        ).to(self.device)

    def head(self, group: int) -> nn.Module:
        """The classifier of `group`: its auxiliary head, or the network's own head for the last
        group under `final_head=model`."""
        return self.heads[str(group)] if self.has_aux_head(group) else self.model.head

    def head_groups(self) -> set[int]:
        """The groups whose classifiers the current stage needs: those training, the path group."""
        return {*self.training_groups(), self.path_group}

    def _use_heads(self, groups: set[int]) -> None:
        """Keep exactly the aux heads of `groups`, building the missing ones: a finished stage's
        head would only hold memory, and a later stage's is built when that stage starts."""
        wanted = {str(g) for g in groups if self.has_aux_head(g)}
        for key in [key for key in self.heads if key not in wanted]:
            del self.heads[key]
        for key in sorted(wanted - set(self.heads), key=int):
            self.heads[key] = self.new_head(int(key))

    def group_modules(self, group: int) -> list[nn.Module]:
        """The blocks of `group` and its classifier: what one optimiser trains."""
        start, stop = self.groups[group]
        return [*self.model.blocks[start:stop], self.head(group)]

    def deployed_modules(self) -> list[nn.Module]:
        """The classifier training ends with: the blocks up to the path group and that group's head
        (all blocks and the last group's aux head by default; auto_depth may choose fewer)."""
        return [*self.model.blocks[: self.groups[self.path_group][1]], self.head(self.path_group)]

    @abstractmethod
    def training_groups(self) -> list[int]:
        """The groups that train in the current stage."""

    def start_stage(self, stage: Stage) -> None:
        """Freeze everything, then give each training group a fresh optimiser and schedule over this
        stage.

        No model parameter trains in two stages, so there is no optimiser state to carry: the state
        of the groups trained before is dropped with their optimisers (it would only hold memory).
        """
        self.stage_index = stage.index
        self.optimizers, self.schedulers, self._norms, self._norm_steps = [], [], [], 0
        self._use_heads(self.head_groups())
        for module in (self.model, self.heads):
            module.requires_grad_(False)
            module.zero_grad(
                set_to_none=True
            )  # earlier stages' gradients would otherwise stay allocated
        for group in self.training_groups():
            modules = self.group_modules(group)
            self._norms += [
                m
                for module in modules
                for m in module.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)
            ]
            for module in modules:
                module.requires_grad_(True)
            optimizer = make_optimizer([q for m in modules for q in m.parameters()], self.config)
            self.optimizers.append(optimizer)
            self.schedulers.append(
                make_scheduler(
                    optimizer,
                    self.config,
                    stage.epochs * self.steps_per_epoch,
                    default_anneal_frac=ANNEAL_FRAC,
                )
            )  # the shared shape, per stage
        self.optimizer = self.optimizers[
            0
        ]  # the loop reports its learning rate (all groups share the schedule)
        log.info(
            "%s stage %d: blocks %s, %d epochs",
            self.name,
            stage.index,
            stage.info["blocks"],
            stage.epochs,
        )

    # --- one batch ---------------------------------------------------------------------
    def train_mode(self) -> None:
        """Only the groups being trained are in train mode; frozen blocks keep eval-mode BN and
        dropout."""
        self.eval_mode()
        for group in self.training_groups():
            for module in self.group_modules(group):
                module.train()

    def train_group(
        self, slot: int, group: int, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step of `group` (optimiser `slot`) on input `x`: its detached loss and
        output."""
        start, stop = self.groups[group]
        with self.autocast():
            z = self.model.features(x, start, stop)
            loss = self.criterion(self.head(group)(z), y)
        self.optimizers[slot].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers[slot].step()
        self.schedulers[slot].step()
        return loss.detach(), z.detach()

    def warm_up_norms(self) -> None:
        """BN running stats of the trained groups average their first 1/BN_MOMENTUM batches
        (momentum 1/n), then follow the usual moving average: short stages would otherwise keep
        their initial stats (var 1) in eval mode (measured: vgg11 on digits, 1-epoch stages: stage
        2's aux head scored 0.10 val accuracy in eval mode without this warm-up, 0.87 with it, 0.88
        with batch statistics)."""
        if self._norm_steps * BN_MOMENTUM < 1:
            self._norm_steps += 1
            for norm in self._norms:
                norm.momentum = max(BN_MOMENTUM, 1.0 / self._norm_steps)

    def stage_metrics(self, stage: Stage) -> dict[str, Any]:
        """`block`: the deepest block being trained (the one the stage's head reads)."""
        return {"stage": stage.index, "block": self.groups[self.training_groups()[-1]][1] - 1}

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage_index,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "norm_steps": self._norm_steps,
        }

    def load_aux_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint holds the heads in use when it was taken: build those, then load them."""
        self._use_heads({int(key.split(".", 1)[0]) for key in state})
        self.heads.load_state_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Optimiser state only into the stage it was saved from, once that stage has started (a
        later stage starts fresh, as it would have)."""
        if state["stage"] != self.stage_index or not self.optimizers:
            return
        self._norm_steps = state["norm_steps"]
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
