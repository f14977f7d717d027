"""EpochBudget: a Tune searcher wrapper that gives every arm the same search compute.

The compute is counted in the spec's budget unit (trainables/compute.py): standard epochs of
training FLOPs (`compute_epochs`, the default) or trial-epochs (`epoch`). Each trial is charged
what it executed: the largest value of that attribute it reported, so a trial that ASHA or
auto_depth stopped early pays only for what it ran. A trial starts only while the charges of the
ended trials, plus the planned compute of every running one and of itself (`planned(config)`,
its run plan), fit in `search_budget`. A suggestion that does not fit yet is held back (not
dropped: Optuna has asked for it) until a running trial ends and frees what it did not use; once
no trial runs and it still does not fit, the search is finished (`Searcher.FINISHED`). So the
budget never cuts a trial short, an arm spends at most `search_budget` (its first trial always
runs), and it ends less than one trial's planned compute below it unless TuneConfig's
`num_samples` (the spec's max_trials cap) ends the search first: arms end within one trial's cost
of each other. Built like Tune's own ConcurrencyLimiter; its counts travel with the experiment
state, so a resumed search keeps its budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher


class EpochBudget(Searcher):
    """Start trials from `searcher` only while their planned compute fits in `search_budget`."""

    def __init__(
        self,
        searcher: Searcher,
        search_budget: float,
        planned: Callable[[dict[str, Any]], float],
        time_attr: str = "compute_epochs",
    ):
        self.searcher = searcher  # the attribute name Tune's save/restore follows through wrappers
        self.search_budget, self.planned, self.time_attr = search_budget, planned, time_attr
        self.used: dict[str, float] = {}  # trial id -> the compute it has reported so far
        self.plans: dict[str, float] = {}  # trial id -> its planned compute
        self.running: set[str] = set()
        # a suggestion held back: (the trial id the wrapped searcher knows it by, config, plan)
        self.pending: tuple[str, dict[str, Any], float] | None = None
        self.aliases: dict[str, str] = {}  # Tune's trial id -> the wrapped searcher's
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def committed(self) -> float:
        """What ended trials used plus the planned compute of the running ones."""
        ended = sum(used for trial_id, used in self.used.items() if trial_id not in self.running)
        return ended + sum(self.plans[trial_id] for trial_id in self.running)

    def spent(self) -> float:
        """What every trial has executed so far (the search's charge)."""
        return sum(self.used.values())

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.pending is None:
            suggestion = self.searcher.suggest(trial_id)
            if suggestion in (None, Searcher.FINISHED):
                return suggestion
            self.pending = (trial_id, suggestion, float(self.planned(suggestion)))
        asked_as, config, plan = self.pending
        first = not self.used
        if not first and self.committed() + plan > self.search_budget:
            if self.running:
                return None  # a running trial may end early and free compute
            self.pending = None
            self.searcher.on_trial_complete(asked_as, result=None, error=True)  # never ran
            return Searcher.FINISHED
        self.pending = None
        if asked_as != trial_id:
            self.aliases[trial_id] = asked_as
        self.running.add(trial_id)
        self.plans[trial_id], self.used[trial_id] = plan, 0.0
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._count(trial_id, result)
        self.searcher.on_trial_result(self.aliases.get(trial_id, trial_id), result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        self._count(trial_id, result)
        self.running.discard(trial_id)
        self.searcher.on_trial_complete(
            self.aliases.get(trial_id, trial_id), result=result, error=error
        )

    def _count(self, trial_id: str, result: dict[str, Any] | None) -> None:
        if result and self.time_attr in result:
            self.used[trial_id] = max(self.used.get(trial_id, 0.0), float(result[self.time_attr]))

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        # Tune's own wrappers call this through a private shim for searchers older than `**spec`;
        # the searcher wrapped here (OptunaSearch) takes it, so the public method is called directly
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def get_state(self) -> dict[str, Any]:
        return {
            "used": dict(self.used),
            "plans": dict(self.plans),
            "running": sorted(self.running),
            "pending": self.pending,
            "aliases": dict(self.aliases),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.used, self.plans = dict(state["used"]), dict(state["plans"])
        self.running, self.aliases = set(state["running"]), dict(state["aliases"])
        self.pending = state["pending"]

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
