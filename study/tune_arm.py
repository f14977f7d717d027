"""The sweep's Ray Tune experiments: one Optuna search per arm, then one seeds phase for all arms.

Every arm's search gets the same compute, `budget.search_epochs` trial-epochs (study.epoch_budget),
with `budget.max_trials` as a cap. ASHA stops trials early only in the arms whose method allows it
(`StudySpec.stops_early`, docs/search.md).

Each experiment lives in `<storage>/<name>`; one that was interrupted is resumed with
Tuner.restore (finished trials stay finished, running ones continue from their checkpoints).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.samplers import TPESampler
from ray import tune
from ray.tune import ResultGrid
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search_spaces import default_point, get_search_space, to_flat_config
from study.capacity import search_limit
from study.epoch_budget import EpochBudget
from study.spec import Arm, StudySpec
from study.system_metrics import sampled_trial
from study.tune_callbacks import MlflowTrialCallback, ProgressCallback
from trainables.config import TrainConfig
from trainables.trainable import (
    ARM_CONFIG_KEY,
    FINAL_KEY,
    SCORE_TEST_KEY,
    flat_config,
    with_resources,
)

SEEDS_EXPERIMENT = "seeds"
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
    ):
        self.spec, self.storage = spec, storage.rstrip("/")
        self.tracking_uri, self.experiment_id = tracking_uri, experiment_id
        self.cluster_slots = cluster_slots  # trials the cluster holds at once (study/capacity.py)

    @property
    def reuse_actors(self) -> bool:
        """Reuse trial actors (DESIGN §8: ~2.8 s saved per trial), but not for worker-group trials: their
        TorchTrainer is still shutting down when the next trial would start on the actor."""
        return self.spec.resources.workers == 1

    def concurrency(self, limit: int) -> int:
        """budget.max_concurrent, or with "auto" what the cluster holds, capped by `limit`."""
        chosen = self.spec.budget.max_concurrent
        return min(self.cluster_slots, limit) if chosen == "auto" else chosen

    def search(self, arm: Arm, parent_run_id: str, label: str) -> dict[str, Any] | None:
        """Optuna TPE (first trial: the method's defaults) within the arm's epoch budget, ASHA on val_acc where
        valid; the best trial's config and what the search spent, or None."""
        spec, budget = self.spec, self.spec.budget
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base = self._base_config(arm)
        space_args = (
            arm.method,
            arm.model,
            budget.epochs,
            base["optimizer"],
            spec.pinned(arm.method),
        )
        concurrent = self.concurrency(search_limit(spec))
        searcher = TrialConfigSearch(
            get_search_space(*space_args),
            metric="val_acc",
            mode="max",
            points_to_evaluate=[default_point(*space_args)],
            sampler=TPESampler(
                seed=spec.search.sampler_seed,
                n_startup_trials=spec.search.startup_trials,
                constant_liar=concurrent > 1,
            ),
        )  # running trials count as bad: no duplicate picks
        scheduler = None
        if spec.stops_early(arm.method):
            scheduler = ASHAScheduler(
                time_attr="epoch",
                metric="val_acc",
                mode="max",
                max_t=budget.epochs,
                grace_period=budget.grace_period,
                reduction_factor=budget.reduction_factor,
            )
        tune_config = tune.TuneConfig(
            search_alg=EpochBudget(searcher, budget.search_epochs, budget.epochs),
            scheduler=scheduler,
            num_samples=budget.max_trials,
            max_concurrent_trials=concurrent,
            reuse_actors=self.reuse_actors,
            trial_dirname_creator=trial_dirname,
        )
        results = self._fit(
            f"{arm.slug}-search",
            f"{label} {arm.name} search",
            base,
            tune_config,
            budget.max_trials,
            {arm.name: parent_run_id},
            "search",
            (spec.resources.cpu, spec.resources.gpu),
        )
        spent = search_spent(results)
        client = MlflowClient(self.tracking_uri)
        for key, value in spent.items():
            client.log_metric(parent_run_id, f"search/{key}", value)
        print(
            f"{label} {arm.name}: search spent {spent['epochs_spent']} of {budget.search_epochs} trial-epochs "
            f"in {spent['trials']} trials",
            flush=True,
        )
        best = best_result(results)
        if best is None:
            print(
                f"{label} {arm.name}: no search trial finished; the arm has no seeds phase",
                flush=True,
            )
            return None
        config = TrainConfig.from_flat(flat_config(best.config)).to_flat()
        searched = {k: _short(v) for k, v in config.items() if base.get(k) != v} or "the defaults"
        print(
            f"{label} {arm.name}: best val_acc {best.metrics['val_acc']:.4f} with {searched}",
            flush=True,
        )
        return {
            "config": config,
            "val_acc": best.metrics["val_acc"],
            "trial_id": best.metrics["trial_id"],
            "search": spent,
        }

    def seeds(
        self, best_configs: dict[Arm, dict[str, Any]], parents: dict[str, str]
    ) -> dict[str, Any]:
        """Every arm's best config rerun with seeds 1..budget.seeds at the full budget, in one experiment."""
        seeds = list(range(1, self.spec.budget.seeds + 1))
        param_space = {
            ARM_CONFIG_KEY: tune.grid_search(list(best_configs.values())),
            "seed": tune.grid_search(seeds),
            SCORE_TEST_KEY: True,
        }
        total = len(seeds) * len(best_configs)
        tune_config = tune.TuneConfig(
            max_concurrent_trials=self.concurrency(total),
            reuse_actors=self.reuse_actors,
            trial_dirname_creator=trial_dirname,
        )
        cpu, gpu = timed_resources(self.spec.resources.cpu, self.spec.resources.gpu)
        print(
            f"[seeds]: time and memory are reported from these trials, so none shares a device: "
            f"{cpu:g} CPU core(s) of its own{'' if gpu else ' (pinned)'}, {gpu:g} GPU(s) per trial",
            flush=True,
        )
        results = self._fit(
            SEEDS_EXPERIMENT,
            "[seeds]",
            param_space,
            tune_config,
            total,
            parents,
            "seeds",
            (cpu, gpu),
        )
        return {
            "seeds": seeds,
            "arms": [arm.name for arm in best_configs],
            "errored": sum(r.error is not None for r in results),
        }

    def _base_config(self, arm: Arm) -> dict[str, Any]:
        """The arm's fixed part of every trial config; data_dir made absolute (trials run in their own dirs)."""
        flat = self.spec.train_config(arm.model, arm.method).to_flat()
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
                f"{label}: {total} trials, up to {tune_config.max_concurrent_trials} at a time{auto}",
                flush=True,
            )
            callbacks = [
                MlflowTrialCallback(
                    self.tracking_uri, self.experiment_id, parents, self.spec.name, phase
                ),
                ProgressCallback(label, total, seeds_phase=phase == "seeds"),
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


def search_spent(results: ResultGrid) -> dict[str, int]:
    """What an arm's search spent: trial-epochs (each trial's last reported epoch, summed) and trials."""
    epochs = [int((r.metrics or {}).get("epoch", 0)) for r in results]
    return {"epochs_spent": sum(epochs), "trials": len(epochs)}


class TrialConfigSearch(OptunaSearch):
    """OptunaSearch whose trial configs hold only what a trial trains with (values sampled only to derive a
    knob are dropped here), so a trial needs no knowledge of how it was sampled."""

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        config = super().suggest(trial_id)
        return to_flat_config(config) if isinstance(config, dict) else config


def best_result(results: ResultGrid) -> tune.Result | None:
    """The trial with the highest final val_acc, among those that ran the full budget if any did."""
    usable = [r for r in results if r.error is None and "val_acc" in (r.metrics or {})]
    full = [r for r in usable if FINAL_KEY in r.metrics]
    return max(full or usable, key=lambda r: r.metrics["val_acc"], default=None)


def timed_resources(cpu: float, gpu: float) -> tuple[float, float]:
    """(CPUs, GPUs) per timed trial (seeds and equal-time phases), whose time and memory the report
    shows: no two share a device. With GPUs: a whole GPU each (at least `ceil(gpu)`), the search's
    CPUs. CPU only: `cpu` rounded up to whole cores, which the trial holds alone
    (trainables.pinning), so timed trials run side by side on a node, one core set each.
    """
    if gpu > 0:
        return cpu, float(max(1, math.ceil(gpu)))
    return float(max(1, math.ceil(cpu))), 0.0


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
