"""EpochBudget on a real Tuner: an arm's search stops at its trial-epoch budget without cutting a trial short."""

from __future__ import annotations

from pathlib import Path

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from study.epoch_budget import EpochBudget

SEARCH_EPOCHS, EPOCHS = 10, 4


def stop_at_space(trial: optuna.Trial) -> dict:
    return {"stop_at": trial.suggest_int("stop_at", 1, EPOCHS)}


def test_trials_stop_when_the_next_whole_trial_would_not_fit(ray_local: None, tmp_path: Path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def count_epochs(
        config: dict,
    ) -> None:  # local: pickled by value, so Ray's workers need not import this file
        """A trial that reports `stop_at` epochs, then ends on its own (as an auto_depth or early-stopped trial)."""
        for epoch in range(1, config["stop_at"] + 1):
            tune.report({"epoch": epoch, "val_acc": epoch / 10})

    searcher = OptunaSearch(
        stop_at_space, metric="val_acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    tuner = tune.Tuner(
        count_epochs,
        tune_config=tune.TuneConfig(
            search_alg=EpochBudget(searcher, SEARCH_EPOCHS, EPOCHS),
            num_samples=50,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    spent = [r.metrics["epoch"] for r in results]
    assert all(
        r.error is None and r.metrics["epoch"] == r.config["stop_at"] for r in results
    )  # none cut short
    assert SEARCH_EPOCHS - EPOCHS < sum(spent) <= SEARCH_EPOCHS  # without the budget: 50 trials
    assert len(spent) < 50
