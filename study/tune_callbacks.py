"""Tune callbacks of the sweep driver: every trial to MLflow (driver only), and one console line per
trial.

MLflow layout (the contract the report reads): one child run per trial under its arm's parent
run, tags role=trial, arm (`<model>/<label>`), model, method (the trained method), phase, trial_id,
study (the spec's name), tune_experiment, and in the timed phases pair (the key that pairs runs
across arms); param `study` is the study index (0..budget.studies-1). Written by
study.trial_run.TrialRun like a `study trial` run. The trial reports its data set in its first
result, system-metric samples with every result and fit's final metrics with its last; the seeds
phase's runs get the trained weights from the trial's last checkpoint. Runs are found again by
their `trial_id` tag, so a resumed sweep never duplicates one; runs of trials that Tune lost in an
interruption are deleted at the end.
Modeled on ray.air.integrations.mlflow.MLflowLoggerCallback, with one MlflowClient in the driver.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.result import AUTO_RESULT_KEYS

from study import tracking
from study.phase_check import last_line
from study.spec import Arm
from study.system_metrics import SYSTEM_SAMPLES_KEY
from study.trial_run import TrialRun, run_params
from trainables.trainable import (
    DATASET_KEY,
    DIVERGED_KEY,
    FINAL_KEY,
    flat_config,
    load_state,
    numbers,
    run_tags,
    trial_config,
)

log = logging.getLogger(__name__)

NOT_METRICS = {*AUTO_RESULT_KEYS, "done", "trial_id", "experiment_tag", "should_checkpoint"}
WEIGHTS_PHASE = "seeds"  # the runs whose trained weights are kept as an artifact


class MlflowTrialCallback(tune.Callback):
    """MLflow child runs for the trials of one Tuner (one phase; each trial's arm comes from its
    config)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parents: dict[str, str],
        study: str,
        phase: str,
        tune_experiment: str,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parents = dict(parents)  # arm name -> parent run id
        self.study = study
        self.phase = phase
        self.tune_experiment = tune_experiment  # its runs, apart from a phase's other batches
        self._client: MlflowClient | None = None
        self._runs: dict[str, TrialRun] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment
        return {**self.__dict__, "_client": None, "_runs": {}}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    # --- Tune hooks ---------------------------------------------------------------------
    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.run(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        run = self.run(trial)
        if DATASET_KEY in result:
            run.log_dataset(result[DATASET_KEY])
        samples = result.get(SYSTEM_SAMPLES_KEY, [])
        if DIVERGED_KEY in result:  # the reason is logged when the trial errors
            run.log_system(samples)
            return
        started = "node_id" in result and result.get(DATASET_KEY)  # a (re)started trial process
        run.log_epoch(
            {k: v for k, v in numbers(result).items() if k not in NOT_METRICS},
            samples,
            {"node_id": result["node_id"]} if started else None,
        )

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        run = self.run(trial)
        final = (trial.last_result or {}).get(FINAL_KEY)
        if final is None:  # stopped early by the scheduler
            run.stop_early()
            return
        if self.phase == WEIGHTS_PHASE and trial.checkpoint is not None:
            run.log_weights(load_state(trial.checkpoint))
        run.finish(final)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.run(trial).fail(error_reason(trial))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        """Delete the runs of trials this experiment does not know (started after its last saved
        state)."""
        known = {trial.trial_id for trial in trials}
        for run in self._phase_runs():
            if run.data.tags.get("trial_id") not in known:
                log.warning(
                    "deleting MLflow run %s: trial %s was lost in an interruption and rerun under "
                    "a new id",
                    run.info.run_id,
                    run.data.tags.get("trial_id"),
                )
                self.client.delete_run(run.info.run_id)

    # --- runs ----------------------------------------------------------------------------
    def run(self, trial: Trial) -> TrialRun:
        """The trial's run: cached, else found by its trial_id tag, else created."""
        if trial.trial_id not in self._runs:
            found = self._phase_runs(tracking.tag_filter("trial_id", trial.trial_id))
            self._runs[trial.trial_id] = (
                TrialRun.existing(self.client, found[0].info.run_id)
                if found
                else self._create_run(trial)
            )
        return self._runs[trial.trial_id]

    def _create_run(self, trial: Trial) -> TrialRun:
        config = trial_config(trial.config)
        recorded = run_tags(trial.config)
        arm = recorded.get("arm", Arm(config.model, config.method).name)
        label = f"seed {config.seed}" if "pair" in recorded else trial.trial_id
        tags = {
            "role": "trial",
            "study": self.study,
            "arm": arm,
            "model": config.model,
            "method": config.method,
            "phase": self.phase,
            "trial_id": trial.trial_id,
            "tune_experiment": self.tune_experiment,
            **({"pair": recorded["pair"]} if "pair" in recorded else {}),
        }
        return TrialRun.create(
            self.client,
            self.experiment_id,
            f"{arm} {self.phase} {label}",
            {**run_params(config), "study": recorded.get("study", 0)},
            tags,
            parent_run_id=self.parents[arm],
            source="python -m study sweep",
        )

    def _phase_runs(self, extra_filter: str = "") -> list:
        """This Tuner's runs: trial runs of its phase and experiment under one of its parents."""
        filters = [
            tracking.tag_filter("role", "trial"),
            tracking.tag_filter("phase", self.phase),
            tracking.tag_filter("tune_experiment", self.tune_experiment),
        ]
        filters += [extra_filter] if extra_filter else []
        runs = tracking.find_runs(self.client, self.experiment_id, " and ".join(filters))
        parent_ids = set(self.parents.values())
        return [run for run in runs if run.data.tags.get(tracking.PARENT_TAG) in parent_ids]


def error_reason(trial: Trial) -> str:
    """Why a trial errored: the divergence reason it reported, else the last line of its error
    text."""
    reason = (trial.last_result or {}).get(DIVERGED_KEY)
    if reason:
        return reason
    return last_line(
        (trial.error_file and _read(trial.error_file)) or "unknown error (no error file)"
    )


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


class ProgressCallback(tune.Callback):
    """One console line per finished trial: the experiment, how many trials are done, the
    outcome."""

    def __init__(self, label: str, total: int, timed: bool = False):
        self.label, self.total = label, total
        # a timed phase (seeds, equal time) mixes arms: its lines name each trial's arm and seed,
        # and show test accuracy; a search trial's line shows validation only (the test set is
        # for the final score, not for watching a search)
        self.timed = timed

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        result = trial.last_result or {}
        final = result.get(FINAL_KEY)
        val = f"val_acc {result.get('val_acc', float('nan')):.4f}"
        test = f", test_acc {final['test_acc']:.4f}" if final and self.timed else ""
        outcome = (
            f"{val}{test}, {final['train_time_s']:.1f} s training"
            if final
            else f"stopped early at epoch {result.get('epoch')}, {val}"
        )
        self._print(trials, trial, outcome)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._print(trials, trial, f"errored: {error_reason(trial)}")

    def _print(self, trials: list[Trial], trial: Trial, outcome: str) -> None:
        done = (
            sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials if t is not trial) + 1
        )
        config = flat_config(trial.config)
        arm = run_tags(trial.config).get("arm", f"{config['model']}/{config['method']}")
        who = f" {arm} seed {config['seed']}" if self.timed else ""
        print(
            f"{self.label}: {done}/{self.total}{who} trial {trial.trial_id}: {outcome}", flush=True
        )
