"""greedy: block-by-block training with auxiliary heads (seed 002), its decoupled form (DGL) and
automatic depth selection (seed 003); see docs/greedy.md.

Blocks are trained in groups of `blocks_per_stage`. Each group but the last has its own
auxiliary head (`aux_depth` hidden conv layers, pool, linear); the last group is classified by
the network's own `head`, so the trained network is exactly the standard architecture.
- sequential (default): one stage per group; earlier blocks are frozen (no grad, eval mode,
  run under `torch.no_grad()` or cached), so memory follows one group, not the whole net.
- `decoupled`: one stage; every group trains at once on its predecessor's detached output,
  with its own optimiser, so no gradient crosses a group boundary.
- `auto_depth`: sequential, but stop adding groups once the new group's val accuracy gains less
  than `min_gain` over the best so far for `patience` groups; the classifier is then the best
  group's prefix and aux head.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from trainables.config import TrainConfig, check_choice, check_range
from trainables.data import Batcher, ImageSet
from trainables.measure import MB
from trainables.methods.aux_heads import build_aux_head
from trainables.methods.base import Method, MethodParams, Stage
from trainables.methods.optim import make_optimizer, make_scheduler
from trainables.models import BlockNet

log = logging.getLogger(__name__)

CACHE_BATCH = 512
BN_MOMENTUM = 0.1  # torch's default, reached after the warm-up below
ANNEAL_FRAC = 0.25  # greedy's anneal_frac default: each stage anneals over its last quarter (docs/greedy.md)
CACHE_FREE_FRACTION = 0.5  # cache only when the features need at most this share of the free memory
_MEMINFO = "/proc/meminfo"


@dataclass
class GreedyParams(MethodParams):
    """Knobs of the greedy family (defaults: sequential greedy, one block per stage, equal epochs)."""

    aux_depth: int = 1  # hidden 3x3 conv layers of each auxiliary head (Belilovsky's k), 1..3
    blocks_per_stage: int = 1  # blocks trained together as one group (one stage each when sequential)
    epochs_per_block: list[float] | None = None  # relative epoch weights, one per stage; None = equal split
    decoupled: bool = False  # DGL: all groups at once, each on detached input, own optimiser
    auto_depth: bool = False  # seed 003: stop adding groups when val accuracy stops improving
    min_gain: float = 0.005  # auto_depth: smallest val accuracy gain that counts as an improvement
    patience: int = 1  # auto_depth: groups without such a gain before stopping
    cache_features: bool = False  # compute the frozen prefix once per stage (no augmentation then)
    cache_max_mb: float | None = None  # cache size limit; None = half the device's free memory

    def __post_init__(self) -> None:
        check_choice("aux_depth", self.aux_depth, (1, 2, 3))
        check_range("blocks_per_stage", self.blocks_per_stage, 1, None)
        check_range("min_gain", self.min_gain, 0.0, None)
        check_range("patience", self.patience, 1, None)
        if self.cache_max_mb is not None:
            check_range("cache_max_mb", self.cache_max_mb, 0.0, None, low_open=True)
        if self.epochs_per_block is not None:
            weights = self.epochs_per_block
            if not isinstance(weights, (list, tuple)) or not weights or not all(
                isinstance(w, (int, float)) and w > 0 for w in weights
            ):
                raise ValueError(
                    f"epochs_per_block={weights!r} is not valid; give a non-empty list of positive "
                    "relative weights, one per stage (e.g. 1,1,2), or leave it unset for an equal split"
                )
        if self.decoupled:
            for key in ("auto_depth", "cache_features", "epochs_per_block"):
                if getattr(self, key) not in (False, None):
                    raise ValueError(f"{key}={getattr(self, key)!r} needs sequential stages; it is not valid "
                                     "with decoupled=true (one stage, all blocks at once)")


def block_groups(num_blocks: int, blocks_per_stage: int) -> list[tuple[int, int]]:
    """[start, stop) block ranges of `blocks_per_stage` blocks each (the last may be shorter)."""
    check_range("blocks_per_stage", blocks_per_stage, 1, num_blocks)
    return [(start, min(start + blocks_per_stage, num_blocks)) for start in range(0, num_blocks, blocks_per_stage)]


def split_budget(epochs: int, weights: list[float]) -> list[int]:
    """Epochs per stage: 1 each, the rest shared by weight (largest remainder; ties go to later stages)."""
    n = len(weights)
    extra = epochs - n
    shares = [extra * w / sum(weights) for w in weights]
    counts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(n), key=lambda i: (shares[i] - counts[i], i), reverse=True)
    for i in by_remainder[: extra - sum(counts)]:
        counts[i] += 1
    return [1 + c for c in counts]


class Greedy(Method):
    """Greedy layerwise training (sequential, decoupled or with automatic depth) of a BlockNet."""

    name = "greedy"
    Params = GreedyParams
    params: GreedyParams

    def __init__(self, config: TrainConfig, model: BlockNet, num_classes: int, device: torch.device,
                 steps_per_epoch: int):
        super().__init__(config, model, num_classes, device, steps_per_epoch)
        p = self.params
        self.groups = block_groups(model.num_blocks, p.blocks_per_stage)
        self.last = len(self.groups) - 1
        self.shapes = model.feature_shapes()
        self.heads = nn.ModuleDict({
            str(g): build_aux_head(self.shapes[stop - 1], num_classes, "conv", p.aux_depth)
            for g, (_, stop) in enumerate(self.groups[:-1])
        })
        self.stage_epochs = [config.epochs] if p.decoupled else self._stage_epochs(config.epochs)
        self.stage_index = 0
        self.path_group = self.last  # the group whose head gives 'main'; the full net unless training says otherwise
        self.trained_group = self.last if p.decoupled else -1
        self.best_acc, self.best_group, self.strikes = -math.inf, self.last, 0
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list[torch.optim.lr_scheduler.LRScheduler] = []
        self._cache: torch.Tensor | None = None
        self._cache_checked = False
        self._norms: list[nn.modules.batchnorm._BatchNorm] = []
        self._norm_steps = 0

    def _stage_epochs(self, epochs: int) -> list[int]:
        n = len(self.groups)
        weights = self.params.epochs_per_block or [1.0] * n
        if len(weights) != n:
            raise ValueError(f"epochs_per_block has {len(weights)} weights; {self.model.name} in stages of "
                             f"blocks_per_stage={self.params.blocks_per_stage} has {n} stages")
        if epochs < n:
            raise ValueError(f"epochs={epochs} is too small for greedy: {self.model.name} has {self.model.num_blocks} "
                             f"blocks, i.e. {n} stages of blocks_per_stage={self.params.blocks_per_stage}, and every "
                             f"stage needs >= 1 epoch; use epochs >= {n} or a larger blocks_per_stage")
        return split_budget(epochs, list(weights))

    # --- structure -------------------------------------------------------------------
    def plan(self) -> list[Stage]:
        if self.params.decoupled:
            return [Stage(0, self.config.epochs, {"blocks": [0, self.model.num_blocks], "decoupled": True})]
        return [Stage(g, e, {"blocks": list(self.groups[g])}) for g, e in enumerate(self.stage_epochs)]

    def aux_modules(self) -> nn.ModuleDict:
        return self.heads

    def head(self, group: int) -> nn.Module:
        """The classifier of `group`: its auxiliary head, or the network's own head for the last group."""
        return self.model.head if group == self.last else self.heads[str(group)]

    def _group_modules(self, group: int) -> list[nn.Module]:
        start, stop = self.groups[group]
        return [*self.model.blocks[start:stop], self.head(group)]

    def _training_groups(self) -> list[int]:
        return list(range(len(self.groups))) if self.params.decoupled else [self.stage_index]

    def start_stage(self, stage: Stage) -> None:
        self.stage_index = stage.index
        self._cache, self._cache_checked = None, False
        for module in (self.model, self.heads):
            module.requires_grad_(False)
            module.zero_grad(set_to_none=True)  # earlier stages' gradients would otherwise stay allocated
        self.optimizers, self.schedulers, self._norms, self._norm_steps = [], [], [], 0
        for group in self._training_groups():
            modules = self._group_modules(group)
            self._norms += [m for module in modules for m in module.modules()
                            if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            for module in modules:
                module.requires_grad_(True)
            optimizer = make_optimizer([q for m in modules for q in m.parameters()], self.config)
            self.optimizers.append(optimizer)
            self.schedulers.append(make_scheduler(optimizer, self.config, stage.epochs * self.steps_per_epoch,
                                                  default_anneal_frac=ANNEAL_FRAC))  # the shared shape, per stage
        self.optimizer = self.optimizers[0]  # the loop reports its learning rate (all groups share the schedule)
        if not self.params.decoupled:
            self.path_group = self.trained_group = stage.index
        log.info("greedy stage %d: blocks %s, %d epochs", stage.index, stage.info["blocks"], stage.epochs)

    def end_stage(self, stage: Stage, val_metrics: dict[str, float]) -> bool:
        """auto_depth: keep the best group so far; stop after `patience` groups that gain < min_gain."""
        if not self.params.auto_depth:
            return True
        acc = val_metrics["val_acc"]
        if acc >= self.best_acc + self.params.min_gain:
            self.best_acc, self.best_group, self.strikes = acc, stage.index, 0
        else:
            self.strikes += 1
        stop = self.strikes >= self.params.patience
        if stop or stage.index == self.last:
            self.path_group = self.best_group
        if stop:
            log.info("auto_depth: val_acc %.4f of blocks[:%d] gains < %g over %.4f %d time(s); depth %d chosen",
                     acc, self.groups[stage.index][1], self.params.min_gain, self.best_acc, self.strikes,
                     self.groups[self.best_group][1])
        return not stop

    # --- one batch ---------------------------------------------------------------------
    def train_mode(self) -> None:
        """Only the groups being trained are in train mode; frozen blocks keep eval-mode BN and dropout."""
        self.eval_mode()
        for group in self._training_groups():
            for module in self._group_modules(group):
                module.train()

    def train_batches(
        self, data: ImageSet, batcher: Batcher, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the current stage's input: the frozen prefix's output (cached or computed without grad)."""
        start = self.groups[self.stage_index][0]
        if self.params.decoupled or start == 0:
            return super().train_batches(data, batcher, generator)
        if self.params.cache_features and not self._cache_checked:
            self._cache, self._cache_checked = self._cached_inputs(data, batcher, start), True
        if self._cache is not None:
            cache = self._cache
            indices = batcher.batch_indices(len(data), self.config.batch_size, generator, data.x.device)
            return ((cache[idx], data.y[idx]) for idx in indices)
        return ((self._prefix(x, start), y) for x, y in super().train_batches(data, batcher, generator))

    @torch.no_grad()
    def _prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """The frozen blocks[:stop] in eval mode, without autograd state."""
        with self.autocast():
            return self.model.features(x, 0, stop)

    def _cached_inputs(self, data: ImageSet, batcher: Batcher, start: int) -> torch.Tensor | None:
        """blocks[:start] of every (unaugmented) training image, or None when that would not fit."""
        itemsize = 2 if self.device.type == "cuda" and self.config.amp else 4
        need_mb = len(data) * math.prod(self.shapes[start - 1]) * itemsize / MB
        limit_mb = self.params.cache_max_mb
        if limit_mb is None:
            limit_mb = CACHE_FREE_FRACTION * free_memory_mb(self.device)
        if need_mb > limit_mb:
            log.warning("cache_features: the output of blocks[:%d] for %d images needs %.1f MB > limit %.1f MB; "
                        "re-running the frozen blocks on every batch instead", start, len(data), need_mb, limit_mb)
            return None
        log.info("cache_features: caching blocks[:%d] output (%.1f MB, no augmentation in this stage)", start, need_mb)
        return torch.cat([self._prefix(x, start) for x, _ in batcher.eval_batches(data, CACHE_BATCH)])

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step per training group; `x` is the stage's input as `train_batches` yields it."""
        self._warm_up_norms()
        losses: dict[str, torch.Tensor] = {}
        for slot, group in enumerate(self._training_groups()):
            start, stop = self.groups[group]
            with self.autocast():
                z = self.model.features(x, start, stop)
                loss = self.criterion(self.head(group)(z), y)
            self.optimizers[slot].zero_grad(set_to_none=True)
            loss.backward()
            self.optimizers[slot].step()
            self.schedulers[slot].step()
            losses["loss" if group == self.last or not self.params.decoupled else f"loss_block{stop - 1}"] = \
                loss.detach()
            x = z.detach()
        return losses

    def _warm_up_norms(self) -> None:
        """BN running stats of the trained groups average their first 1/BN_MOMENTUM batches (momentum 1/n),
        then follow the usual moving average: short stages would otherwise keep their initial stats
        (var 1) in eval mode (measured: vgg11 on digits, 1-epoch stages: stage 2's aux head scored 0.10 val
        accuracy in eval mode without this warm-up, 0.87 with it, 0.88 with batch statistics)."""
        if self._norm_steps * BN_MOMENTUM < 1:
            self._norm_steps += 1
            for norm in self._norms:
                norm.momentum = max(BN_MOMENTUM, 1.0 / self._norm_steps)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """'main': blocks up to the path group + its head; decoupled also scores every aux head (`block<i>`)."""
        if not self.params.decoupled:
            stop = self.groups[self.path_group][1]
            return {"main": self.head(self.path_group)(self.model.features(x, 0, stop))}
        outputs: dict[str, torch.Tensor] = {}
        for group, (start, stop) in enumerate(self.groups):
            x = self.model.features(x, start, stop)
            outputs["main" if group == self.last else f"block{stop - 1}"] = self.head(group)(x)
        return outputs

    def stage_metrics(self, stage: Stage) -> dict[str, Any]:
        """`block`: the deepest block being trained (the one the stage's head reads)."""
        return {"stage": stage.index, "block": self.groups[self._training_groups()[-1]][1] - 1}

    def final_metrics(self) -> dict[str, Any]:
        return {"chosen_depth": self.groups[self.path_group][1],
                "blocks_trained": self.groups[self.trained_group][1] if self.trained_group >= 0 else 0}

    # --- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage_index,
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "best_acc": self.best_acc, "best_group": self.best_group, "strikes": self.strikes,
            "path_group": self.path_group, "norm_steps": self._norm_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """auto_depth state always; optimiser state only into the stage it was saved from."""
        self.best_acc, self.best_group, self.strikes = state["best_acc"], state["best_group"], state["strikes"]
        self.path_group = state["path_group"]
        if state["stage"] != self.stage_index:
            return
        self._norm_steps = state["norm_steps"]
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)


def free_memory_mb(device: torch.device) -> float:
    """Free memory on `device` in MB: CUDA's free bytes, or MemAvailable on Linux; 0 when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / MB
    try:
        with open(_MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
