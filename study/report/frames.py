"""The report's data: trials and epochs frames from MLflow, the runs each arm's statistics use,
the equal-time phase's scoring and the verdict's families (pure pandas over what the sweep
logged)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from study import verdict
from study.equal_time import PARAM_PREFIX
from study.phases import EQUAL_TIME, SEEDS
from study.spec import LABEL_SEPARATOR, Report, method_of
from study.verdict import BASELINE

COMPARED = ("layer_to_layer", "greedy")


CONTROL = "control"  # the verdict family of the control arms


METHOD_ORDER = (BASELINE, *COMPARED)


HISTORY_KEYS = ("val_acc", "train_loss", "epoch_time_s", "peak_mem_mb")


SUMMARY_KEYS = ("test_acc", "train_time_s", "peak_mem_mb", "best_val_acc", "val_acc")


PROMOTED_TAGS = ("arm", "model", "method", "phase", "trial_id", "error", "pair")


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
    """One arm (model, label): the runs its statistics use and the failures among those tried."""

    model: str
    method: str  # the arm's label: its method, or `<method>:<name>` for a control arm
    from_seeds: (
        bool  # False: no seeds-phase runs, `used` is the best search trial by validation accuracy
    )
    used: pd.DataFrame  # FINISHED runs with a test accuracy; column `pair` pairs runs across arms
    failed_runs: pd.DataFrame  # FAILED or KILLED runs of the same phase


@dataclass
class EqualTime:
    """The equal-time phase: per model the budget T and the target (fixed by the sweep before the
    phase), the runs it scores and their time-to-target, censored at T."""

    targets: dict[str, verdict.Target]  # per model
    budgets: dict[str, float]  # per model: T, standard's median seeds-phase training time (s)
    # standard's seeds runs and the compared arms' equal-time runs (trials-frame rows)
    runs: pd.DataFrame
    failed_runs: pd.DataFrame  # FAILED or KILLED equal-time runs
    time_to_target: pd.DataFrame  # verdict.time_to_target_table, censored at T
    profile: pd.DataFrame  # performance profile: rho per method (columns) over TAUS (index)


def trials_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """MLflow's runs frame (run_id, status, times, `metrics.*`, `params.*`, `tags.*`) with the contract tags,
    the run name and the seed as columns of their own, and every SUMMARY_KEYS final metric present."""
    frame = runs.copy()
    for key in PROMOTED_TAGS:
        frame[key] = frame.get(f"tags.{key}")
    frame["arm"] = frame["arm"].fillna(frame["model"] + "/" + frame["method"])
    frame["method"] = frame["arm"].str.split("/", n=1).str[1]  # the label (tags.method: trained)
    frame["run_name"] = frame["tags.mlflow.runName"]
    frame["seed"] = pd.to_numeric(frame.get("params.seed"), errors="coerce").astype("Int64")
    study = frame["params.study"] if "params.study" in frame else pd.Series(0, index=frame.index)
    frame["study"] = pd.to_numeric(study, errors="coerce").fillna(0).astype(int)
    frame["pair"] = frame["pair"].fillna(frame["seed"].astype(str))  # runs logged before pairs
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
    validation accuracy."""
    arms = []
    for model, method in arm_order(trials):
        runs = trials[(trials["model"] == model) & (trials["method"] == method)]
        from_seeds = bool((runs["phase"] == SEEDS).any())
        considered = runs[runs["phase"] == SEEDS] if from_seeds else runs[runs["phase"] == "search"]
        usable = finished(considered)
        if from_seeds:
            used = usable.drop_duplicates("pair", keep="last")
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


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs with a finite test accuracy."""
    return runs[(runs["status"] == "FINISHED") & np.isfinite(runs[ACC])]


def is_control(label: str) -> bool:
    """Whether an arm label names a control arm (`standard:control`)."""
    return LABEL_SEPARATOR in label


def arm_order(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, label) pairs: models alphabetically; methods standard, layer_to_layer, greedy, then
    the rest, each method's control arms after it."""
    pairs = trials[["model", "method"]].drop_duplicates().itertuples(index=False)
    rank = {method: i for i, method in enumerate(METHOD_ORDER)}
    return sorted(
        ((m, k) for m, k in pairs),
        key=lambda p: (p[0], rank.get(method_of(p[1]), len(rank)), method_of(p[1]), p[1]),
    )


def search_spent(parents: list[Run]) -> dict[str, tuple[int, int]]:
    """arm -> (trial-epochs, trials) its searches spent: the `search/*` metrics on its parent run,
    summed over the studies (`search/study<k>/*`; study/tune_arm.py)."""
    spent = {}
    for parent in parents:
        metrics = parent.data.metrics
        totals = [
            sum(int(v) for k, v in metrics.items() if k.startswith("search/") and k.endswith(key))
            for key in ("/epochs_spent", "/trials")
        ]
        if any(k.startswith("search/") for k in metrics):
            spent[parent.data.tags["arm"]] = (totals[0], totals[1])
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


def equal_time_plan(parents: list[Run]) -> tuple[dict[str, float], dict[str, verdict.Target]]:
    """Per model T and the target, from the `equal_time.*` params the sweep logged on the arm runs
    (study/equal_time.py); models without them are left out."""
    budgets, targets = {}, {}
    for parent in parents:
        params, model = parent.data.params, parent.data.tags.get("model")
        if PARAM_PREFIX + "budget_s" in params:
            budgets[model] = float(params[PARAM_PREFIX + "budget_s"])
        if PARAM_PREFIX + "target_val_acc" in params:
            targets[model] = verdict.Target(
                float(params[PARAM_PREFIX + "target_val_acc"]),
                params[PARAM_PREFIX + "target_origin"],
            )
    return budgets, targets


def equal_time(
    arms: list[ArmRuns], trials: pd.DataFrame, epochs: pd.DataFrame, parents: list[Run]
) -> EqualTime:
    """The equal-time phase's runs (with standard's seeds runs, whose time sets T) and their
    time-to-target, each run's epochs censored at its model's T: a target reached after T is a
    miss, the same rule for every arm."""
    budgets, targets = equal_time_plan(parents)
    phase = trials[(trials["phase"] == EQUAL_TIME) & trials["model"].isin(list(budgets))]
    standard = [
        arm.used
        for arm in arms
        if arm.method == BASELINE and arm.from_seeds and arm.model in budgets
    ]
    reruns = finished(phase).drop_duplicates(["arm", "pair"], keep="last")
    runs = pd.concat([*standard, reruns], ignore_index=True) if standard else reruns
    failed = phase[phase["status"].isin(FAILED_STATUSES)]
    timed = pd.concat([runs, failed], ignore_index=True)
    clock = verdict.training_clock(epochs[epochs["run_id"].isin(timed["run_id"])])
    within = clock["clock_s"].astype(float) <= clock["model"].map(budgets).astype(float)
    censored = clock[within].drop(columns="clock_s")
    table = verdict.time_to_target_table(timed, censored, targets)
    return EqualTime(
        targets, budgets, runs, failed, table, verdict.performance_profile(table, TAUS)
    )


def scores(runs: pd.DataFrame) -> pd.DataFrame:
    """model, method, pair and test_acc of trials-frame rows: what a verdict family compares."""
    return runs[["model", "method", "pair", ACC]].rename(columns={ACC: "test_acc"})


def comparisons(arms: list[ArmRuns], equal: EqualTime) -> list[verdict.Comparison]:
    """The verdict's three families, Holm's correction within each and never across: equal epochs
    (seeds-phase test accuracy, every method against standard), equal time (equal-time phase test
    accuracy against standard's seeds runs) and control (each control arm against its method's
    arm, seeds phase)."""
    seeds = scores(pd.concat([arm.used for arm in arms], ignore_index=True))
    control = seeds["method"].map(is_control)
    families = [
        verdict.compare(seeds[~control], "test_acc", "equal epochs", "test accuracy"),
        verdict.compare(scores(equal.runs), "test_acc", "equal time", "test accuracy"),
        [
            found
            for base in sorted({method_of(label) for label in seeds.loc[control, "method"]})
            for found in verdict.compare(
                seeds[seeds["method"].map(method_of) == base],
                "test_acc",
                CONTROL,
                "test accuracy",
                baseline=base,
            )
        ],
    ]
    return [c for family in families for c in verdict.with_holm(family)]


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
    most = 0
    for _, group in runs.groupby(nodes):
        events = sorted(
            [(t, 1) for t in group["start_time"].dropna()]
            + [(t, -1) for t in group["end_time"].dropna()],
            key=lambda e: (e[0], e[1]),
        )  # an end before a start at the same instant: no overlap
        level = 0
        for _, change in events:
            level += change
            most = max(most, level)
    return most
