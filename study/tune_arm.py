"""The sweep's Ray Tune experiments: one Optuna search per arm and study, then the timed phases
(seeds, equal time; study.phases) in one experiment per batch for all arms.

Every arm's search gets the same compute, `budget.search_epochs` in the budget's unit (standard
epochs of FLOPs, or trial-epochs; study.epoch_budget), with `budget.max_trials` as a cap. ASHA
stops trials early only in the arms whose method allows it (`StudySpec.stops_early`,
docs/search.md), at rungs of the same unit.

Each experiment lives in `<storage>/<name>`; one that was interrupted is resumed with
Tuner.restore (finished trials stay finished, running ones continue from their checkpoints).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.samplers import TPESampler
from ray import tune
from ray.tune import ResultGrid
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler

from search_spaces import default_point, get_search_space, to_flat_config
from study.capacity import search_limit
from study.epoch_budget import EpochBudget
from study.optuna_storage import StoredOptunaSearch, study_name
from study.phase_check import phase_failure
from study.phases import TimedTrial
from study.spec import Arm, StudySpec
from study.system_metrics import sampled_trial
from study.tune_callbacks import MlflowTrialCallback, ProgressCallback
from trainables.compute import run_plan
from trainables.distributed import DRIVER_CPU
from trainables.trainable import (
    ARM_CONFIG_KEY,
    FINAL_KEY,
    RUN_TAGS_KEY,
    SCORE_TEST_KEY,
    trial_config,
    with_resources,
)

# the result that charges a search trial its compute, and ASHA's time attribute, per budget unit
CHARGED = {"flops": "compute_epochs", "epochs": "epoch"}
UNIT_NAMES = {"flops": "standard epochs of FLOPs", "epochs": "trial-epochs"}
# Checkpoints kept per trial. With 1, Tune deletes the checkpoint that the saved experiment state
# still names until its next snapshot; a driver killed in that window resumes into a missing file.
CHECKPOINTS_KEPT = 2


class TuneRunner:
    """Builds, runs and resumes the Tune experiments of one study."""

    def __init__(
        self,
        spec: StudySpec,
        storage: str,
        tracking_uri: str,
        experiment_id: str,
        cluster_slots: int = 1,
        optuna_storage: str | None = None,
    ):
        self.spec, self.storage = spec, storage.rstrip("/")
        self.tracking_uri, self.experiment_id = tracking_uri, experiment_id
        self.cluster_slots = cluster_slots  # trials the cluster holds at once (study/capacity.py)
        self.optuna_storage = optuna_storage  # URL of the searches' Optuna studies; None: in memory

    @property
    def reuse_actors(self) -> bool:
        """Tune runs the next trial in a finished trial's process (saves ~2.8 s per trial and the
        imports), but not for worker-group trials: a trial Tune stops (ASHA, or its last epoch) is
        still shutting its worker group down when the next would start, and Tune gives up on an
        actor whose trial thread has not ended within 2 s (the trial then fails)."""
        return self.spec.resources.workers == 1

    def concurrency(self, limit: int) -> int:
        """budget.max_concurrent, or with "auto" what the cluster holds, capped by `limit`."""
        chosen = self.spec.budget.max_concurrent
        return min(self.cluster_slots, limit) if chosen == "auto" else chosen

    def search(self, arm: Arm, study: int, parent_run_id: str, label: str) -> dict[str, Any]:
        """Optuna TPE (first trial: the method's defaults) within the arm's search budget, ASHA on
        val_acc where valid, with the arm's sampler seed in `study`; the best trial's config, its
        val_acc, the sampler seed and what the search spent, or {"failed": the first failure's
        reason} when no trial finished."""
        spec, budget = self.spec, self.spec.budget
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base = self._base_config(arm, study)
        sampler_seed = spec.sampler_seed(arm, study)
        who = spec.search_label(arm, study)
        space_args = (
            arm.method,
            arm.model,
            budget.epochs,
            base["optimizer"],
            spec.pinned(arm.method),
            budget.unit,
            spec.dataset,
        )
        charged = CHARGED[budget.unit]
        concurrent = self.concurrency(search_limit(spec))
        searcher = TrialConfigSearch(
            get_search_space(*space_args),
            metric="val_acc",
            mode="max",
            points_to_evaluate=[default_point(*space_args)],
            sampler=TPESampler(
                seed=sampler_seed,
                n_startup_trials=spec.search.startup_trials,
                constant_liar=concurrent > 1,
            ),  # running trials count as bad: no duplicate picks
            **self.optuna_study(arm, study if budget.studies > 1 else None),
        )
        scheduler = None
        if spec.stops_early(arm.method):
            scheduler = ASHAScheduler(
                time_attr=charged,
                metric="val_acc",
                mode="max",
                max_t=budget.epochs,  # sets the rungs; a run's plan may cost a little more:
                stop_last_trials=False,  # every trial ends at the end of its own plan
                grace_period=budget.grace_period,
                reduction_factor=budget.reduction_factor,
            )
        planned = functools.partial(planned_charge, base)
        tune_config = tune.TuneConfig(
            search_alg=EpochBudget(searcher, budget.search_epochs, planned, charged),
            scheduler=scheduler,
            num_samples=budget.max_trials,
            max_concurrent_trials=concurrent,
            reuse_actors=self.reuse_actors,
            trial_dirname_creator=trial_dirname,
        )
        results = self._fit(
            f"{spec.search_name(arm, study)}-search",
            f"{label} {who} search",
            {**base, RUN_TAGS_KEY: {"arm": arm.name, "study": study}},
            tune_config,
            budget.max_trials,
            {arm.name: parent_run_id},
            "search",
            (spec.resources.cpu, spec.resources.gpu),
        )
        spent = search_spent(results, charged, planned)
        client = MlflowClient(self.tracking_uri)
        prefix = f"search/study{study}/" if budget.studies > 1 else "search/"
        for key, value in spent.items():
            client.log_metric(parent_run_id, prefix + key, value)
        print(
            f"{label} {who}: search spent {spent['compute_spent']:.2f} of "
            f"{budget.search_epochs:g} {UNIT_NAMES[budget.unit]} in {spent['trials']} trials "
            f"(sampler seed {sampler_seed})",
            flush=True,
        )
        best = best_result(results)
        if best is None:
            print(f"{label} {who}: no search trial finished; no seeds phase for it", flush=True)
            return {"failed": phase_failure(results)}
        config = trial_config(best.config).to_flat()
        searched = {k: _short(v) for k, v in config.items() if base.get(k) != v} or "the defaults"
        print(
            f"{label} {who}: best val_acc {best.metrics['val_acc']:.4f} with {searched}",
            flush=True,
        )
        return {
            "config": config,
            "val_acc": best.metrics["val_acc"],
            "trial_id": best.metrics["trial_id"],
            "sampler_seed": sampler_seed,
            "search": spent,
        }

    def timed(
        self, phase: str, name: str, trials: list[TimedTrial], parents: dict[str, str]
    ) -> dict[str, Any]:
        """One batch of a timed phase (seeds, equal_time) as the Tune experiment `name`, every trial
        on the timed phases' resources and scoring the test set: how many trials errored and, when
        none finished, the first failure's reason (`failed`, else None)."""
        entries = [
            {
                **trial.config,
                SCORE_TEST_KEY: True,
                RUN_TAGS_KEY: {"arm": trial.arm.name, "study": trial.study, "pair": trial.pair},
            }
            for trial in trials
        ]
        tune_config = tune.TuneConfig(
            max_concurrent_trials=self.concurrency(len(entries)),
            reuse_actors=self.reuse_actors,
            trial_dirname_creator=trial_dirname,
        )
        resources = self.spec.resources
        cpu, gpu = timed_resources(resources.cpu, resources.gpu, resources.workers)
        print(
            f"[{name}]: time and memory are reported from these trials, so none shares a device: "
            f"{cpu:g} CPU core(s) of its own{'' if gpu else ' (pinned)'}, {gpu:g} GPU(s) per "
            f"{'worker' if resources.workers > 1 else 'trial'}",
            flush=True,
        )
        results = self._fit(
            name,
            f"[{name}]",
            {ARM_CONFIG_KEY: tune.grid_search(entries)},
            tune_config,
            len(entries),
            parents,
            phase,
            (cpu, gpu),
        )
        return {
            "errored": sum(r.error is not None for r in results),
            "failed": phase_failure(results),
        }

    def optuna_study(self, arm: Arm, study_index: int | None = None) -> dict[str, str]:
        """Where the arm's search is kept as an Optuna study (study.optuna_storage): the searcher's
        `storage_url` and `study_name`; none when the runner has no Optuna storage."""
        if self.optuna_storage is None:
            return {}
        return {"storage_url": self.optuna_storage, "study_name": study_name(arm.name, study_index)}

    def _base_config(self, arm: Arm, study: int) -> dict[str, Any]:
        """The arm's fixed part of every search trial config in `study` (its search seed);
        data_dir made absolute (trials run in their own dirs)."""
        seed = self.spec.search_seed(arm, study)
        flat = self.spec.train_config(arm.model, arm.method, seed=seed).to_flat()
        if flat.get("data_dir"):
            flat["data_dir"] = str(Path(flat["data_dir"]).expanduser().resolve())
        return flat

    def _fit(
        self,
        name: str,
        label: str,
        param_space: dict[str, Any],
        tune_config: tune.TuneConfig,
        total: int,
        parents: dict[str, str],
        phase: str,
        resources: tuple[float, float],
    ) -> ResultGrid:
        trainable = with_resources(*resources, self.spec.resources.workers, sampled_trial)
        path = f"{self.storage}/{name}"
        start = time.perf_counter()
        if tune.Tuner.can_restore(path):
            print(f"{label}: resuming the interrupted experiment {path}", flush=True)
            tuner = tune.Tuner.restore(
                path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
            )
        else:
            auto = " (auto)" if self.spec.budget.max_concurrent == "auto" else ""
            print(
                f"{label}: {total} trials, up to {tune_config.max_concurrent_trials} at a "
                f"time{auto}",
                flush=True,
            )
            callbacks = [
                MlflowTrialCallback(
                    self.tracking_uri, self.experiment_id, parents, self.spec.name, phase, name
                ),
                ProgressCallback(label, total, timed=phase != "search"),
            ]
            run_config = tune.RunConfig(
                name=name,
                storage_path=self.storage,
                callbacks=callbacks,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=self.spec.budget.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            )
            tuner = tune.Tuner(
                trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
            )
        results = tuner.fit()
        print(f"{label}: done in {time.perf_counter() - start:.0f} s", flush=True)
        return results


def search_spent(
    results: ResultGrid, charged: str, planned: Callable[[dict[str, Any]], float]
) -> dict[str, float]:
    """What an arm's search spent in the budget's unit (each trial's last `charged` value, which
    study.epoch_budget charged it, summed), the largest planned cost of one of its trials (the
    arms' spend ends within one such cost of each other) and the trial count."""
    costs = [float((r.metrics or {}).get(charged, 0.0)) for r in results]
    return {
        "compute_spent": sum(costs),
        "largest_trial": max((planned(r.config) for r in results), default=0.0),
        "trials": len(costs),
    }


def planned_charge(base: dict[str, Any], suggestion: dict[str, Any]) -> float:
    """What a trial of `suggestion` over the arm's `base` config is planned to cost, in the budget's
    unit (its run plan; the charge is per image, so one batch stands in for the data set)."""
    config = trial_config({**base, **suggestion})
    return run_plan(config, config.batch_size).charge


class TrialConfigSearch(StoredOptunaSearch):
    """OptunaSearch whose trial configs hold only what a trial trains with (values sampled only to
    derive a knob are dropped here), so a trial needs no knowledge of how it was sampled."""

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = super().suggest(trial_id)
        return to_flat_config(config) if isinstance(config, dict) else config


def best_result(results: ResultGrid) -> tune.Result | None:
    """The trial with the highest final val_acc, among those that ran the full budget if any did."""
    usable = [r for r in results if r.error is None and "val_acc" in (r.metrics or {})]
    full = [r for r in usable if FINAL_KEY in r.metrics]
    return max(full or usable, key=lambda r: r.metrics["val_acc"], default=None)


def timed_resources(cpu: float, gpu: float, workers: int = 1) -> tuple[float, float]:
    """(CPUs, GPUs) per timed trial, or per worker of a worker group (seeds and equal-time phases),
    whose time and memory the report shows: no two share a device. With GPUs: a whole GPU each (at
    least `ceil(gpu)`), the search's CPUs. CPU only: `cpu` rounded up to whole cores, which the
    trial holds alone (trainables.pinning), so timed trials run side by side on a node, one core
    set each; a worker group's workers get them less their share of the DRIVER_CPU of the trial
    that drives them, else a group that fills a node would need more than it and never start.
    """
    if gpu > 0:
        return cpu, float(max(1, math.ceil(gpu)))
    cores = float(max(1, math.ceil(cpu)))
    return (cores - DRIVER_CPU / workers if workers > 1 else cores), 0.0


def trial_dirname(trial: Trial) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return trial.trial_id


def _short(value: Any) -> Any:
    """4 significant digits for printing."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.4g}")
    if isinstance(value, (list, tuple)):
        return [_short(v) for v in value]
    return value
