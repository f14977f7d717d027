"""EpochBudget on a real Tuner: a search stops at its compute budget without cutting a trial short,
charges a trial that stopped early only what it ran, and arms of unequal trial costs end within one
trial's cost of each other."""

from __future__ import annotations

from pathlib import Path

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from study.epoch_budget import EpochBudget

SEARCH_BUDGET, EPOCHS = 10.0, 4


def stop_at_space(trial: optuna.Trial) -> dict:
    return {"stop_at": trial.suggest_int("stop_at", 1, EPOCHS)}


def run_arm(tmp_path: Path, name: str, cost: float) -> tuple[list[tune.Result], EpochBudget]:
    """A search of trials that plan EPOCHS epochs of `cost` standard epochs each, report their
    compute every epoch and end on their own after `stop_at` (as auto_depth or ASHA would)."""

    def trial_fn(config: dict) -> None:  # local: pickled by value, so workers need not import this
        for epoch in range(1, config["stop_at"] + 1):
            tune.report({"epoch": epoch, "compute_epochs": epoch * cost, "val_acc": epoch / 10})

    searcher = OptunaSearch(
        stop_at_space, metric="val_acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    budget = EpochBudget(searcher, SEARCH_BUDGET, lambda config: EPOCHS * cost)
    tuner = tune.Tuner(
        trial_fn,
        tune_config=tune.TuneConfig(search_alg=budget, num_samples=50, max_concurrent_trials=2),
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0),
    )
    return list(tuner.fit()), budget


def test_trials_are_charged_what_they_ran_and_arms_end_within_one_trial(
    ray_local: None, tmp_path: Path
):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spent = {}
    for name, cost in (("cheap", 0.7), ("dear", 1.3)):
        results, budget = run_arm(tmp_path, name, cost)
        assert all(
            r.error is None and r.metrics["epoch"] == r.config["stop_at"] for r in results
        )  # none cut short: every trial ran to where it stopped by itself
        charged = [r.metrics["compute_epochs"] for r in results]
        assert charged == [r.config["stop_at"] * cost for r in results]  # not EPOCHS * cost
        assert sum(budget.used.values()) == sum(charged)  # what the searcher charged
        assert SEARCH_BUDGET - EPOCHS * cost < sum(charged) <= SEARCH_BUDGET  # 50 without it
        spent[name] = sum(charged)
    assert abs(spent["cheap"] - spent["dear"]) <= EPOCHS * 1.3  # within one trial's cost


def test_a_suggestion_that_does_not_fit_waits_for_a_running_trial():
    """Held back while a trial runs (it may free compute), started under the new trial id once it
    fits, the wrapped searcher still told about it under the id it was asked with."""

    class Recorder(Searcher):
        def __init__(self) -> None:
            super().__init__(metric="val_acc", mode="max")
            self.asked, self.completed = 0, []

        def suggest(self, trial_id: str) -> dict:
            self.asked += 1
            return {"n": self.asked}

        def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
            self.completed.append((trial_id, error))

    inner = Recorder()
    budget = EpochBudget(inner, 10.0, lambda config: 6.0)
    assert budget.suggest("a") == {"n": 1}  # the first trial always runs
    assert budget.suggest("b") is None  # 6 + 6 > 10 while "a" runs: held back
    assert inner.asked == 2 and budget.suggest("c") is None and inner.asked == 2
    budget.on_trial_complete("a", {"compute_epochs": 3.0})  # stopped early: charged 3
    assert budget.suggest("d") == {"n": 2}  # 3 + 6 fits now
    budget.on_trial_complete("d", {"compute_epochs": 6.0})
    assert inner.completed == [("a", False), ("b", False)]  # "d" is "b" to the wrapped searcher
    assert budget.suggest("e") == Searcher.FINISHED  # 9 + 6 > 10, nothing running
    assert inner.completed[-1] == ("e", True)  # asked for, never run
    assert budget.spent() == 9.0
