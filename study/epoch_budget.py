"""EpochBudget: a Tune searcher wrapper that gives every arm the same search compute, in trial-epochs.

It passes the wrapped searcher's suggestions on while the epochs that ended trials used, plus the
whole budget of every running trial, leave room for one more whole trial. Otherwise it waits for a
running trial to end (one that ASHA or auto_depth stopped early frees the epochs it did not use)
and, once none is running, tells Tune the search is finished (`Searcher.FINISHED`). So the budget
never cuts a trial short, and an arm spends at most `search_epochs`; it spends more than
`search_epochs - epochs_per_trial` unless TuneConfig's `num_samples` (the spec's max_trials cap)
ends the search first. Built like Tune's own ConcurrencyLimiter; its counts travel with the
experiment state, so a resumed search keeps its budget.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher


class EpochBudget(Searcher):
    """Suggest trials from `searcher` only while a whole trial still fits in `search_epochs`."""

    def __init__(
        self,
        searcher: Searcher,
        search_epochs: int,
        epochs_per_trial: int,
        time_attr: str = "epoch",
    ):
        self.searcher = searcher  # the attribute name Tune's save/restore follows through wrappers
        self.search_epochs, self.epochs_per_trial, self.time_attr = (
            search_epochs,
            epochs_per_trial,
            time_attr,
        )
        self.used: dict[str, int] = {}  # trial id -> epochs it reported
        self.running: set[str] = set()
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def committed(self) -> int:
        """Epochs ended trials used plus the whole budget of the running ones."""
        ended = sum(
            epochs for trial_id, epochs in self.used.items() if trial_id not in self.running
        )
        return ended + self.epochs_per_trial * len(self.running)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.committed() + self.epochs_per_trial > self.search_epochs:
            return None if self.running else Searcher.FINISHED
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.running.add(trial_id)
            self.used[trial_id] = 0
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._count(trial_id, result)
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self._count(trial_id, result)
        self.running.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def _count(self, trial_id: str, result: dict[str, Any] | None) -> None:
        if result and self.time_attr in result:
            self.used[trial_id] = max(self.used.get(trial_id, 0), int(result[self.time_attr]))

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        # Tune's own wrappers call this through a private shim for searchers older than `**spec`;
        # the searcher wrapped here (OptunaSearch) takes it, so the public method is called directly
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def get_state(self) -> dict[str, Any]:
        return {"used": dict(self.used), "running": sorted(self.running)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.used, self.running = dict(state["used"]), set(state["running"])

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
