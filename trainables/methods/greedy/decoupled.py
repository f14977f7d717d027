"""Decoupled greedy learning (DGL, Belilovsky et al. 2020): every group trains at once, in one
stage.

Group g runs on group g-1's output detached, computes its own loss with its own classifier and steps
its own optimiser right away, so no gradient crosses a group boundary and one group's graph is alive
at a time.
"""

from __future__ import annotations

from typing import Any

import torch

from trainables.methods.base import Stage
from trainables.methods.greedy.base import Greedy


class DecoupledGreedy(Greedy):
    """All block groups trained together, each on its predecessor's detached output."""

    def layout(self) -> list[Stage]:
        """One stage; its info names the groups (they decide its cost, trainables.compute)."""
        groups = [list(group) for group in self.groups]
        return [
            Stage(
                0, info={"blocks": [0, self.model.num_blocks], "decoupled": True, "groups": groups}
            )
        ]

    def training_groups(self) -> list[int]:
        return list(range(len(self.groups)))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step per group, in order; 'loss' is the last group's classifier's (the deployed one),
        `loss_block<i>` the other groups' heads'."""
        self.warm_up_norms()
        losses: dict[str, torch.Tensor] = {}
        for group in self.training_groups():
            loss, x = self.train_group(group, group, x, y)
            losses["loss" if group == self.last else f"loss_block{self.groups[group][1] - 1}"] = (
                loss
            )
        return losses

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """'main': all blocks + the last group's classifier; `block<i>`: the aux head after block i
        (every group but the last)."""
        outputs: dict[str, torch.Tensor] = {}
        for group, (start, stop) in enumerate(self.groups):
            x = self.model.features(x, start, stop)
            outputs["main" if group == self.last else f"block{stop - 1}"] = self.head(group)(x)
        return outputs

    def final_metrics(self) -> dict[str, Any]:
        return {"chosen_depth": self.model.num_blocks, "blocks_trained": self.model.num_blocks}
