"""Sequential greedy (Belilovsky et al. 2019): one stage per block group, earlier groups frozen.

Stage g trains group g and its classifier on the output of the frozen blocks before it (eval mode,
run under `torch.no_grad()` or read from a feature cache), so memory follows one group, not the net.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from trainables.data import Batcher, ImageSet
from trainables.errors import UserError
from trainables.methods.base import Stage
from trainables.methods.greedy.base import Greedy
from trainables.methods.greedy.feature_cache import cached_features


class SequentialGreedy(Greedy):
    """Greedy layerwise training: the groups one after another, each on its frozen prefix's
    output."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.weights = self._stage_weights()
        self.trained_group = -1
        self._cache: torch.Tensor | None = None
        self._cache_checked = False

    def _stage_weights(self) -> list[float]:
        n = len(self.groups)
        weights = self.params.epochs_per_block or [1.0] * n
        if len(weights) != n:
            raise UserError(
                f"epochs_per_block has {len(weights)} weights; {self.model.name} in stages of "
                f"blocks_per_stage={self.params.blocks_per_stage} has {n} stages"
            )
        return [float(w) for w in weights]

    # --- structure -------------------------------------------------------------------
    def layout(self) -> list[Stage]:
        return [
            Stage(g, info={"blocks": list(self.groups[g])}, weight=w)
            for g, w in enumerate(self.weights)
        ]

    def training_groups(self) -> list[int]:
        return [self.stage_index]

    def start_stage(self, stage: Stage) -> None:
        self.path_group = self.trained_group = stage.index
        super().start_stage(stage)
        self._cache, self._cache_checked = None, False

    # --- one batch ---------------------------------------------------------------------
    def train_batches(
        self, data: ImageSet, batcher: Batcher, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the current stage's input: the frozen prefix's output (cached or computed
        without grad)."""
        start = self.groups[self.stage_index][0]
        if start == 0:
            return super().train_batches(data, batcher, generator)
        if self.params.cache_features and not self._cache_checked:
            self._cache = cached_features(
                self.prefix,
                data,
                batcher,
                self.shapes[start - 1],
                start,
                self.device,
                self.config.amp,
                self.params.cache_max_mb,
            )
            self._cache_checked = True
        if self._cache is not None:
            cache = self._cache
            indices = batcher.batch_indices(
                len(data), self.config.batch_size, generator, data.x.device
            )
            return ((cache[idx], data.y[idx]) for idx in indices)
        return (
            (self.prefix(x, start), y) for x, y in super().train_batches(data, batcher, generator)
        )

    @torch.no_grad()
    def prefix(self, x: torch.Tensor, stop: int) -> torch.Tensor:
        """The frozen blocks[:stop] in eval mode, without autograd state."""
        with self.autocast():
            return self.model.features(x, 0, stop)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step of the stage's group; `x` is the stage's input as `train_batches` yields it."""
        self.warm_up_norms()
        loss, _ = self.train_group(0, self.stage_index, x, y)
        return {"loss": loss}

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """'main': blocks up to the path group + its classifier (before any stage and after the
        last: all blocks and the last group's classifier, the deployed one)."""
        stop = self.groups[self.path_group][1]
        return {"main": self.head(self.path_group)(self.model.features(x, 0, stop))}

    def deployed_history(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The epochs of the path group's stage: only they scored the classifier that training
        ends with."""
        return [h for h in history if h["stage"] == self.path_group]

    def final_metrics(self) -> dict[str, Any]:
        return {
            "chosen_depth": self.groups[self.path_group][1],
            "blocks_trained": self.groups[self.trained_group][1] if self.trained_group >= 0 else 0,
        }
