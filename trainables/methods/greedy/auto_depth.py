"""Sequential greedy that chooses its depth (Xu 2023 gives no stopping rule; this one is ours, see
docs/greedy.md).

After each stage, the new group's val accuracy (its prefix + classifier) counts as an improvement
when it beats the best so far by `min_gain`; after `patience` stages without one, training stops.
The classifier is the best group's prefix + its head: it alone is ranked, reported as val_acc and
tested.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from trainables.methods.base import Stage
from trainables.methods.greedy.sequential import SequentialGreedy

log = logging.getLogger(__name__)


class AutoDepthGreedy(SequentialGreedy):
    """Sequential greedy that stops adding groups once they stop paying, keeping the best prefix."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.best_acc, self.best_group, self.strikes = -math.inf, -1, 0

    def head_groups(self) -> set[int]:
        """The best group's classifier too: it is deployed if training stops. A resumed run starts
        its stage before `load_state_dict` names the best group: it keeps the checkpoint's heads."""
        best = {self.best_group} if self.best_group >= 0 else {int(key) for key in self.heads}
        return super().head_groups() | best

    def end_stage(self, stage: Stage, val_metrics: dict[str, float]) -> bool:
        """Keep the best group so far; stop after `patience` groups that gain < min_gain."""
        acc = val_metrics["val_acc"]
        if acc >= self.best_acc + self.params.min_gain:
            self.best_acc, self.best_group, self.strikes = acc, stage.index, 0
        else:
            self.strikes += 1
        stop = self.strikes >= self.params.patience
        if stop or stage.index == self.last:
            self.path_group = self.best_group
        if stop:
            log.info(
                "auto_depth: val_acc %.4f of blocks[:%d] gains < %g over %.4f %d time(s); depth %d "
                "chosen",
                acc,
                self.groups[stage.index][1],
                self.params.min_gain,
                self.best_acc,
                self.strikes,
                self.groups[self.best_group][1],
            )
        return not stop

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "best_acc": self.best_acc,
            "best_group": self.best_group,
            "strikes": self.strikes,
            "path_group": self.path_group,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The depth choice always (also after training stopped); the path group as saved, unless
        the run resumes into a later stage than the one it was saved in (that stage's own group);
        optimiser state as the base class does."""
        self.best_acc, self.best_group, self.strikes = (
            state["best_acc"],
            state["best_group"],
            state["strikes"],
        )
        if state["stage"] == self.stage_index or not self.optimizers:
            self.path_group = state["path_group"]
        for key in [key for key in self.heads if int(key) not in self.head_groups()]:
            del self.heads[key]  # a checkpoint's head that is neither training nor the best
        super().load_state_dict(state)
