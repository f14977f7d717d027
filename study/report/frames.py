"""The report's data: trials and epochs frames from MLflow, the runs each arm's statistics use, and the
equal-time scoring over them (pure pandas over what the sweep logged)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from study import verdict
from study.report.timing import most_overlapping
from study.spec import Report
from study.verdict import BASELINE

COMPARED = ("layer_to_layer", "greedy")


METHOD_ORDER = (BASELINE, *COMPARED)


HISTORY_KEYS = ("val_acc", "train_loss", "epoch_time_s", "peak_mem_mb")


SUMMARY_KEYS = ("test_acc", "train_time_s", "peak_mem_mb", "best_val_acc", "val_acc")


PROMOTED_TAGS = ("arm", "model", "method", "phase", "trial_id", "error")


FAILED_STATUSES = ("FAILED", "KILLED")


def final_metric(key: str) -> str:
    """The trials-frame column of a trial's final metric `key` (logged once as `final/<key>`)."""
    return f"metrics.final/{key}"


ACC, TIME, MEM = final_metric("test_acc"), final_metric("train_time_s"), final_metric("peak_mem_mb")


VAL = final_metric("val_acc")


EXACT_MEMORY = {
    "cuda_max_memory_allocated": "CUDA max_memory_allocated (exact bytes held by tensors)",
    "cpu_allocator_trace": "torch.profiler allocator events (exact bytes held by CPU tensors)",
}


RSS_MEMORY = {
    "cpu_rss": "process RSS high-water mark (VmHWM; pages, allocator cache and library buffers)"
}


TAUS = np.linspace(1.0, verdict.TAU_MAX, 301)


@dataclass
class ArmRuns:
    """One (model, method) arm: the runs its statistics use and the failures among the runs considered."""

    model: str
    method: str
    from_seeds: (
        bool  # False: no seeds-phase runs, `used` is the best search trial by validation accuracy
    )
    used: (
        pd.DataFrame
    )  # FINISHED runs with a test accuracy (fallback: a final val_acc); `pair` pairs
    #   runs across arms
    failed_runs: pd.DataFrame  # FAILED or KILLED runs of the same phase


@dataclass
class EqualTime:
    """The equal-time results: targets, time-to-target per arm, accuracy at the baseline's median training time."""

    targets: dict[str, verdict.Target]  # per model
    time_to_target: pd.DataFrame  # verdict.time_to_target_table
    budgets: dict[str, float]  # per model: the baseline's median training time (s)
    runs: (
        pd.DataFrame
    )  # the used runs: model, method, pair, test_acc, val_acc, train_time_s, acc_at_time
    profile: pd.DataFrame  # performance profile: rho per method (columns) over TAUS (index)


def trials_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """MLflow's runs frame (run_id, status, times, `metrics.*`, `params.*`, `tags.*`) with the contract tags,
    the run name and the seed as columns of their own, and every SUMMARY_KEYS final metric present."""
    frame = runs.copy()
    for key in PROMOTED_TAGS:
        frame[key] = frame.get(f"tags.{key}")
    frame["arm"] = frame["arm"].fillna(frame["model"] + "/" + frame["method"])
    frame["run_name"] = frame["tags.mlflow.runName"]
    frame["seed"] = pd.to_numeric(frame.get("params.seed"), errors="coerce").astype("Int64")
    for key in SUMMARY_KEYS:
        if final_metric(key) not in frame:
            frame[final_metric(key)] = np.nan
    return frame


def epochs_frame(client: MlflowClient, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, epoch) from the MLflow metric history of HISTORY_KEYS (step = epoch)."""
    columns = [
        "run_id",
        "arm",
        "model",
        "method",
        "phase",
        "status",
        "seed",
        "epoch",
        *HISTORY_KEYS,
    ]
    rows = []
    for trial in trials[columns[:7]].to_dict("records"):
        per_step: dict[int, dict[str, float]] = {}
        for key in HISTORY_KEYS:
            for metric in client.get_metric_history(trial["run_id"], key):
                per_step.setdefault(metric.step, {})[key] = metric.value
        rows += [{**trial, "epoch": step, **values} for step, values in sorted(per_step.items())]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def select_arms(trials: pd.DataFrame) -> list[ArmRuns]:
    """Per arm, in table order: the finished seeds-phase runs, else the best search trial by
    validation accuracy (no test accuracy: search trials never score the test set)."""
    arms = []
    for model, method in arm_order(trials):
        runs = trials[(trials["model"] == model) & (trials["method"] == method)]
        from_seeds = bool((runs["phase"] == "seeds").any())
        considered = runs[runs["phase"] == "seeds"] if from_seeds else runs
        # search trials never score the test set: the fallback takes one that ran its whole budget
        scored = ACC if from_seeds else VAL
        usable = considered[(considered["status"] == "FINISHED") & np.isfinite(considered[scored])]
        if from_seeds:
            used = usable.drop_duplicates("seed", keep="last").assign(
                pair=lambda f: f["seed"].astype(str)
            )
        else:
            score = usable[final_metric("best_val_acc")].fillna(usable[VAL]).fillna(-math.inf)
            used = (
                usable.loc[[score.idxmax()]].assign(pair="best")
                if len(usable)
                else usable.assign(pair="")
            )
        failed = considered[considered["status"].isin(FAILED_STATUSES)]
        arms.append(ArmRuns(model, method, from_seeds, used, failed))
    return arms


def arm_order(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, method) pairs: models alphabetically, methods standard, layer_to_layer, greedy, then the rest."""
    pairs = trials[["model", "method"]].drop_duplicates().itertuples(index=False)
    rank = {method: i for i, method in enumerate(METHOD_ORDER)}
    return sorted(((m, k) for m, k in pairs), key=lambda p: (p[0], rank.get(p[1], len(rank)), p[1]))


def search_spent(parents: list[Run]) -> dict[str, tuple[int, int]]:
    """arm -> (trial-epochs, trials) its search spent: the `search/*` metrics on its parent run (study/tune_arm.py)."""
    spent = {}
    for parent in parents:
        metrics = parent.data.metrics
        if "search/epochs_spent" in metrics:
            spent[parent.data.tags["arm"]] = (
                int(metrics["search/epochs_spent"]),
                int(metrics["search/trials"]),
            )
    return spent


def report_settings(parents: list[Run]) -> Report:
    """The spec's [report] section, from the `report.*` params the sweep logged on the arm runs (else defaults)."""
    fields = set(Report.__dataclass_fields__)
    for parent in parents:
        values = {
            key.removeprefix("report."): json.loads(value)
            for key, value in parent.data.params.items()
            if key.removeprefix("report.") in fields and key.startswith("report.")
        }
        if values:
            return Report(**values)
    return Report()


def equal_time(arms: list[ArmRuns], epochs: pd.DataFrame, settings: Report) -> EqualTime:
    """Targets, time-to-target per arm and accuracy at the baseline's median training time (DESIGN §5a)."""
    columns = {ACC: "test_acc", VAL: "val_acc", TIME: "train_time_s"}
    keep = ["run_id", "model", "method", "pair", *columns]
    used = pd.concat([arm.used[keep] for arm in arms], ignore_index=True).rename(columns=columns)
    timed = pd.concat(
        [used, *(arm.failed_runs[["run_id", "model", "method"]] for arm in arms if arm.from_seeds)],
        ignore_index=True,
    )
    targets = verdict.workload_targets(
        used, settings.targets(sorted(used["model"].unique())), settings.target_tolerance
    )
    table = verdict.time_to_target_table(timed, epochs, targets)
    budgets = {
        model: float(runs["train_time_s"].median())
        for model, runs in used[used["method"] == BASELINE].groupby("model")
        if runs["train_time_s"].notna().any()
    }
    clock = verdict.training_clock(epochs[epochs["run_id"].isin(used["run_id"])])
    per_run = dict(iter(clock.groupby("run_id", sort=False)))
    used["acc_at_time"] = [
        verdict.accuracy_at_time(
            per_run.get(row.run_id, clock.iloc[:0]), budgets[row.model], row.val_acc
        )
        if row.model in budgets
        else math.nan
        for row in used.itertuples()
    ]
    return EqualTime(targets, table, budgets, used, verdict.performance_profile(table, TAUS))


def comparisons(equal: EqualTime) -> list[verdict.Comparison]:
    """Every method against the baseline per model, at equal epochs and at equal time, Holm-corrected together."""
    runs = equal.runs
    return verdict.with_holm(
        verdict.compare(runs, "test_acc", "equal epochs", "test accuracy")
        + verdict.compare(
            runs[runs["model"].isin(list(equal.budgets))],
            "acc_at_time",
            "equal time",
            "validation accuracy",
        )
    )


def exact_memory(runs: pd.DataFrame) -> bool:
    """Whether every run's peak memory is an exact tensor-bytes count (tag `mem_source`), not RSS."""
    return (
        "tags.mem_source" in runs
        and len(runs) > 0
        and bool(runs["tags.mem_source"].isin(EXACT_MEMORY).all())
    )


def max_concurrent(runs: pd.DataFrame) -> int:
    """The largest number of runs whose [start, end] intervals overlap on one node (`tags.node_id`)."""
    nodes = (
        runs["tags.node_id"].fillna("")
        if "tags.node_id" in runs
        else pd.Series("", index=runs.index)
    )
    return max(
        (
            most_overlapping(group["start_time"], group["end_time"])
            for _, group in runs.groupby(nodes)
        ),
        default=0,
    )
