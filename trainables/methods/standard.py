"""standard: end-to-end cross-entropy training of the whole network (the baseline)."""

from __future__ import annotations

from typing import Any

import torch

from trainables.methods.base import Method, Stage
from trainables.methods.optim import make_optimizer, make_scheduler


class Standard(Method):
    name = "standard"

    def layout(self) -> list[Stage]:
        return [Stage(0)]

    def start_stage(self, stage: Stage) -> None:
        self.optimizer = make_optimizer(self.model.parameters(), self.config)
        self.scheduler = make_scheduler(
            self.optimizer, self.config, stage.epochs * self.steps_per_epoch
        )

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.autocast():
            loss = self.criterion(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
