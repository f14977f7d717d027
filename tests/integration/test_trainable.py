"""The Ray trainable: per-epoch reports and checkpoints, resume after a lost worker, divergence
without retries."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from ray import tune
from ray.tune.experiment import Trial

from study.tune_callbacks import error_reason
from trainables.trainable import (
    DATASET_KEY,
    DIVERGED_KEY,
    FINAL_KEY,
    SCORE_TEST_KEY,
    with_resources,
)

EPOCHS = 4
DIVERGING_LR = 1e6  # the loss is NaN within the first epoch


class Recorder(tune.Callback):
    """Records every result; SIGKILLs the worker of the healthy trial once, when its epoch-2
    checkpoint is saved."""

    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.trials: list[Trial] = []
        self.killed_pid: int | None = None

    def on_trial_result(
        self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any
    ) -> None:
        self.results.setdefault(trial.trial_id, []).append(dict(result))

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Trial, checkpoint: Any, **info: Any
    ) -> None:
        result = trial.last_result
        if trial.config["lr"] < 1 and result.get("epoch") == 2 and self.killed_pid is None:
            self.killed_pid = result["pid"]
            os.kill(
                result["pid"], signal.SIGKILL
            )  # a worker lost mid-trial (e.g. a preempted node)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.trials = list(trials)


@pytest.fixture(scope="module")
def experiment(ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Recorder:
    """One Tune experiment: a healthy trial whose worker is killed at epoch 2, and one that
    diverges at epoch 1."""
    recorder = Recorder()
    config = {
        "model": "seed_cnn",
        "method": "standard",
        "dataset": "digits",
        "epochs": EPOCHS,
        "width": 0.125,
        "max_train_samples": 200,
        "batch_size": 32,
        "lr": tune.grid_search([1e-3, DIVERGING_LR]),
        SCORE_TEST_KEY: True,  # as in the timed phases: the final metrics carry the test score
    }
    tuner = tune.Tuner(
        with_resources(1, 0),
        param_space=config,
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(tmp_path_factory.mktemp("tune")),
            name="trainable",
            callbacks=[recorder],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    tuner.fit()
    return recorder


def _trial(recorder: Recorder, diverging: bool) -> Trial:
    return next(t for t in recorder.trials if (t.config["lr"] == DIVERGING_LR) == diverging)


def test_restored_trial_continues_at_the_next_epoch(experiment: Recorder):
    trial = _trial(experiment, diverging=False)
    results = experiment.results[trial.trial_id]
    assert trial.status == Trial.TERMINATED and trial.run_metadata.num_failures == 1
    assert [r["epoch"] for r in results] == list(
        range(1, EPOCHS + 1)
    )  # epoch 1 and 2 were not trained again
    after_restart = [r for r in results if r["pid"] != experiment.killed_pid]
    assert after_restart and after_restart[0]["epoch"] == 3
    final = results[-1]
    assert (
        FINAL_KEY in final
        and 0 <= final[FINAL_KEY]["test_acc"] <= 1
        and final[FINAL_KEY]["epochs_run"] == EPOCHS
    )
    assert DATASET_KEY in results[0] and results[0][DATASET_KEY]["sizes"]["train"] == 200
    assert all(DATASET_KEY not in r for r in results[1:] if r["pid"] == results[0]["pid"])
    assert final["node_id"] and Path(trial.checkpoint.path).name.startswith("checkpoint_")


def test_diverged_trial_errors_with_its_reason_and_retries_do_not_train(experiment: Recorder):
    trial = _trial(experiment, diverging=True)
    results = experiment.results[trial.trial_id]
    assert trial.status == Trial.ERROR
    assert trial.run_metadata.num_failures == 2  # the divergence and the retry
    assert [r["epoch"] for r in results] == [
        0
    ]  # the divergence marker; the retry trained nothing, reported nothing
    assert DIVERGED_KEY in results[-1]
    assert error_reason(trial).startswith("DivergedError: train_loss is nan at epoch 1")
