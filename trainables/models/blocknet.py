"""BlockNet: a network as an ordered list of blocks plus a classifier head.

Every training method splits networks at block indices, so one method works for every
architecture that is expressed as a BlockNet (docs/design.md).
"""

from __future__ import annotations

import torch
from torch import nn


class BlockNet(nn.Module):
    """`blocks[0..L-1]` then `head`; `forward(x, start, stop)` runs a slice of the blocks."""

    def __init__(
        self, blocks: list[nn.Module] | nn.ModuleList, head: nn.Module, name: str = "blocknet"
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.name = name

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @torch.no_grad()
    def feature_shapes(self, input_shape: tuple[int, ...] = (3, 32, 32)) -> list[tuple[int, ...]]:
        """Output shape (without batch) of every block, from one dry forward pass in eval mode."""
        was_training = self.training
        self.eval()
        param = next(self.parameters())
        x = torch.zeros(2, *input_shape, device=param.device)
        shapes = []
        for block in self.blocks:
            x = block(x)
            shapes.append(tuple(x.shape[1:]))
        self.train(was_training)
        return shapes

    def features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run blocks `start..stop-1` (no head)."""
        stop = self.num_blocks if stop is None else stop
        if not 0 <= start <= stop <= self.num_blocks:
            raise ValueError(f"block slice [{start}, {stop}) outside [0, {self.num_blocks}]")
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Blocks `start..stop-1`; the head is applied only when the slice reaches the last
        block."""
        z = self.features(x, start, stop)
        if stop is None or stop == self.num_blocks:
            return self.head(z)
        return z
