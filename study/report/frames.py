"""The report's data: trials and epochs frames from MLflow, the runs each arm's statistics use (a
diverged run counts with chance accuracy), the equal-time phase's scoring, the verdict's families
and the search progress (pure pandas over what the sweep logged)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from study import verdict
from study.equal_time import PARAM_PREFIX
from study.phases import EQUAL_TIME, SEEDS
from study.report.timing import most_overlapping
from study.spec import Report, method_of
from study.verdict import BASELINE

log = logging.getLogger(__name__)

COMPARED = ("layer_to_layer", "greedy")


CONTROL = "control"  # the verdict family of the control arms


METHOD_ORDER = (BASELINE, *COMPARED)


HISTORY_KEYS = ("val_acc", "train_loss", "epoch_time_s", "peak_mem_mb")


SUMMARY_KEYS = ("test_acc", "train_time_s", "peak_mem_mb", "best_val_acc", "val_acc")


PROMOTED_TAGS = ("arm", "model", "method", "phase", "trial_id", "error", "pair")


FAILED_STATUSES = ("FAILED", "KILLED")


DIVERGED = "DivergedError"  # how a diverged trial's `error` tag begins (trainables/trainable.py)


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


COMPUTE_SPENT = "metrics.compute_epochs"  # a trial's last value: its compute in standard epochs
EPOCHS_SPENT = "metrics.epoch"  # its last epoch: the trial-epochs it ran

# the knobs that say what an arm trained, as its runs logged them (`variant`: greedy's, derived)
KNOBS = {
    "layer_to_layer": (
        "split_ratio",
        "split_step",
        "kd_alpha",
        "kd_temperature",
        "teacher_grad",
        "finetune_frac",
    ),
    "greedy": (
        "variant",
        "aux_k",
        "aux_head",
        "final_head",
        "blocks_per_stage",
        "epochs_per_block",
    ),
}
COMPUTE_TOLERANCE = 0.1  # a run's FLOPs may differ this much from its budget (whole epochs)


@dataclass
class ArmRuns:
    """One arm (model, label): the runs its statistics use and the failures among those tried."""

    model: str
    method: str  # the arm's label: its method, or `<method>:<name>` for a control arm
    from_seeds: (
        bool  # False: no seeds-phase runs, `used` is the best search trial by validation accuracy
    )
    used: pd.DataFrame  # the runs that count (`counted`); column `pair` pairs runs across arms
    failed_runs: pd.DataFrame  # FAILED or KILLED runs of the same phase that did not diverge
    diverged: int = 0  # runs in `used` that diverged (counted with chance accuracy)


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
    """MLflow's runs frame (run_id, status, times, `metrics.*`, `params.*`, `tags.*`) with the
    contract tags, the run name and the seed as columns of their own, and every SUMMARY_KEYS final
    metric present; `diverged`: the run ended FAILED because its loss stopped being finite."""
    frame = runs.copy()
    for key in PROMOTED_TAGS:
        frame[key] = frame.get(f"tags.{key}")
    frame["diverged"] = (frame["status"] == "FAILED") & frame["error"].fillna("").str.startswith(
        DIVERGED
    )
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


def with_chance(client: MlflowClient, trials: pd.DataFrame) -> pd.DataFrame:
    """`trials` with `chance_acc`, the accuracy a diverged run counts with: 1 / the class count of
    its data set, from the data set input its runs logged (the diverged runs first). Unrecorded: 0,
    with a warning (a diverged run must count as worse). NaN for data sets without diverged runs."""
    chance: dict[str, float] = {}
    for dataset in trials.loc[trials["diverged"], "params.dataset"].dropna().unique():
        runs = trials[trials["params.dataset"] == dataset].sort_values("diverged", ascending=False)
        classes = next(filter(None, (logged_classes(client, r) for r in runs["run_id"])), None)
        if classes is None:
            log.warning("no run of %s recorded its class count: diverged runs count as 0", dataset)
        chance[dataset] = 1.0 / classes if classes else 0.0
    return trials.assign(chance_acc=trials["params.dataset"].map(chance).astype(float))


def logged_classes(client: MlflowClient, run_id: str) -> int | None:
    """The class count in the profile of the data set a run logged as its input (None if none)."""
    for dataset_input in client.get_run(run_id).inputs.dataset_inputs:
        profile = json.loads(dataset_input.dataset.profile or "{}")
        if "num_classes" in profile:
            return int(profile["num_classes"])
    return None


def counted(considered: pd.DataFrame) -> pd.DataFrame:
    """The runs that count in an arm's statistics: finished ones with a test accuracy, and diverged
    ones with chance accuracy (test and final validation; no time or memory); the last run of each
    pair (the seed's index in its phase, `trials_frame`)."""
    diverged = considered[considered["diverged"]]
    at_chance = diverged["chance_acc"]
    diverged = diverged.assign(**{ACC: at_chance, VAL: at_chance, TIME: math.nan, MEM: math.nan})
    return (
        pd.concat([finished(considered), diverged])
        .sort_values("start_time", kind="stable")
        .drop_duplicates("pair", keep="last")
    )


def select_arms(trials: pd.DataFrame) -> list[ArmRuns]:
    """Per arm, in table order: the seeds-phase runs that count (`counted`), else the best search
    trial by validation accuracy (no test accuracy: search trials never score the test set)."""
    arms = []
    for model, method in arm_order(trials):
        runs = trials[(trials["model"] == model) & (trials["method"] == method)]
        from_seeds = bool((runs["phase"] == SEEDS).any())
        considered = runs[runs["phase"] == SEEDS] if from_seeds else runs[runs["phase"] == "search"]
        if from_seeds:
            used = counted(considered)
        else:
            # the search trial with the best validation accuracy that ran its whole budget
            usable = considered[(considered["status"] == "FINISHED") & np.isfinite(considered[VAL])]
            score = usable[final_metric("best_val_acc")].fillna(usable[VAL]).fillna(-math.inf)
            used = (
                usable.loc[[score.idxmax()]].assign(pair="best")
                if len(usable)
                else usable.assign(pair="")
            )
        failed = considered[considered["status"].isin(FAILED_STATUSES) & ~considered["diverged"]]
        diverged = int(used["diverged"].sum()) if from_seeds else 0
        arms.append(ArmRuns(model, method, from_seeds, used, failed, diverged))
    return arms


def arm_order(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, label) pairs: models alphabetically; methods standard, layer_to_layer, greedy, then
    the rest, each method's control arms after it."""
    pairs = trials[["model", "method"]].drop_duplicates().itertuples(index=False)
    rank = {method: i for i, method in enumerate(METHOD_ORDER)}
    return sorted(
        ((m, k) for m, k in pairs),
        key=lambda p: (p[0], rank.get(method_of(p[1]), len(rank)), method_of(p[1]), p[1]),
    )


@dataclass
class SearchSpend:
    """What an arm's search spent, in the budget's unit, and its costliest trial's share."""

    compute: float
    largest_trial: float
    trials: int


def search_metric(metrics: dict[str, float], key: str) -> list[float]:
    """`search/<key>`, or `search/study<k>/<key>` of every study, from an arm run's metrics."""
    return [v for k, v in metrics.items() if k.startswith("search/") and k.endswith("/" + key)]


def search_spent(parents: list[Run]) -> dict[str, SearchSpend]:
    """arm -> what its searches spent: the `search/*` metrics of its parent run, summed over the
    studies (`search/study<k>/*` when budget.studies > 1; study/tune_arm.py); the largest trial is
    the largest of any study's."""
    spent = {}
    for parent in parents:
        metrics = parent.data.metrics
        compute, largest, trials = (
            search_metric(metrics, key) for key in ("compute_spent", "largest_trial", "trials")
        )
        if compute:
            spent[parent.data.tags["arm"]] = SearchSpend(
                sum(compute), max(largest, default=math.nan), int(sum(trials))
            )
    return spent


@dataclass
class Trained:
    """What an arm's runs trained: chosen knobs, epochs per stage, compute against the budget."""

    knobs: dict[str, str]
    stage_epochs: str  # e.g. "4,4,3" (the first run's; the runs of an arm share their config)
    compute: float  # mean `compute_epochs`: FLOPs in standard epochs
    budget: float  # the runs' `epochs`
    unit: str  # their budget_unit
    within: int  # runs whose compute is within COMPUTE_TOLERANCE of the budget ("flops")
    device_s: float  # mean training seconds x the devices a run held (its data-parallel workers)


def trained(arm: ArmRuns) -> Trained:
    """`Trained` of an arm's runs (the seeds runs, or the best search trial)."""
    runs = arm.used
    if runs.empty:
        return Trained({}, "n/a", math.nan, math.nan, "?", 0, math.nan)
    first = runs.iloc[0]
    knobs = {}
    for knob in KNOBS.get(arm.method, ()):
        value = greedy_variant(first) if knob == "variant" else first.get(f"params.{knob}")
        if isinstance(value, str):
            knobs[knob] = value
    stages = sorted(
        (c for c in runs if c.startswith(final_metric("stage_epochs/"))),
        key=lambda c: int(c.rsplit("/", 1)[1]),
    )
    stage_epochs = ",".join(f"{first[c]:.0f}" for c in stages if pd.notna(first[c]))
    compute = _numbers(runs, final_metric("compute_epochs"))
    budget = _numbers(runs, "params.epochs")
    workers = _numbers(runs, final_metric("workers")).fillna(1.0)
    unit = first.get("params.budget_unit")
    return Trained(
        knobs,
        stage_epochs or "n/a",
        float(compute.mean()),
        float(budget.iloc[0]),
        unit if isinstance(unit, str) else "epochs",  # runs from before the unit existed
        int(((compute / budget - 1).abs() <= COMPUTE_TOLERANCE).sum()),
        float((runs[TIME] * workers).mean()),
    )


def _numbers(runs: pd.DataFrame, column: str) -> pd.Series:
    """`column` as numbers (params are text), NaN where absent."""
    if column not in runs:
        return pd.Series(math.nan, index=runs.index)
    return pd.to_numeric(runs[column], errors="coerce")


def greedy_variant(params: pd.Series) -> str | None:
    """sequential, decoupled (DGL) or auto_depth, from a greedy run's logged params."""
    if "params.decoupled" not in params:
        return None
    if params.get("params.decoupled") == "True":
        return "decoupled"
    return "auto_depth" if params.get("params.auto_depth") == "True" else "sequential"


def report_settings(parents: list[Run]) -> Report:
    """The spec's [report] section, from the `report.*` params the sweep logged on the arm runs
    (else defaults)."""
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


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs with a finite test accuracy."""
    return runs[(runs["status"] == "FINISHED") & np.isfinite(runs[ACC])]


def budget_family(trials: pd.DataFrame) -> str:
    """The seeds phase's question: "equal compute" under a FLOPs budget, else "equal epochs"."""
    units = trials.get("params.budget_unit")
    return "equal compute" if units is not None and (units == "flops").any() else "equal epochs"


def in_points(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """model, method, pair and `points`: 100 × `value` (the verdict's and the margin's unit)."""
    return runs[["model", "method", "pair"]].assign(points=100 * runs[value].astype(float))


def seeds_points(arms: list[ArmRuns]) -> pd.DataFrame:
    """Every arm's counted runs' test accuracy in points (`in_points`)."""
    return in_points(pd.concat([arm.used for arm in arms], ignore_index=True), ACC)


def families(arms: list[ArmRuns], trials: pd.DataFrame) -> list[verdict.Family]:
    """The verdict's questions, each its own Holm family: the seeds phase's test accuracy (equal
    compute or equal epochs), equal time (`rerun_comparisons`) and the control arms against their
    method's arm. Families without a comparison are left out."""
    seeds = seeds_points(arms)
    found = [
        verdict.Family(
            budget_family(trials),
            verdict.compare(seeds, "points", "test accuracy", verdict.against_baseline),
        ),
        verdict.Family("equal time", rerun_comparisons(trials, seeds)),
        verdict.Family(
            CONTROL,
            verdict.compare(seeds, "points", "test accuracy", verdict.against_own_method),
        ),
    ]
    return [family for family in found if family.comparisons]


def rerun_comparisons(trials: pd.DataFrame, seeds: pd.DataFrame) -> list[verdict.Comparison]:
    """The equal-time phase's test accuracy (its runs that count, `counted`) of every method's arm
    against standard's seeds-phase runs (`seeds`, in points), paired by `pair`; empty without it."""
    reruns = trials[trials["phase"] == EQUAL_TIME]
    if reruns.empty:
        return []
    timed = pd.concat([counted(runs) for _, runs in reruns.groupby(["model", "method"])])
    runs = pd.concat([seeds[seeds["method"] == BASELINE], in_points(timed, ACC)])
    return verdict.compare(runs, "points", "test accuracy", verdict.against_baseline)


def spent_column(search: pd.DataFrame) -> str:
    """What a search trial's compute is read from: COMPUTE_SPENT once the trials log it, else
    EPOCHS_SPENT."""
    logged = COMPUTE_SPENT in search and search[COMPUTE_SPENT].notna().any()
    return COMPUTE_SPENT if logged else EPOCHS_SPENT


def search_progress(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arm's search, trial by trial in the order they ended: `spent`, the search compute so
    far (compute_epochs once trials log it, else trial-epochs; stopped trials count), and `best`,
    the best final validation accuracy so far of the trials that ran to the end (what the search
    picks by)."""
    search = trials[trials["phase"] == "search"].sort_values("end_time", kind="stable")
    spent = spent_column(search)
    rows = []
    for (model, method), arm in search.groupby(["model", "method"], sort=False):
        rows.append(
            pd.DataFrame(
                {
                    "model": model,
                    "method": method,
                    "spent": pd.to_numeric(arm[spent]).fillna(0).cumsum(),
                    "best": arm[VAL].cummax().ffill(),
                }
            )
        )
    columns = ["model", "method", "spent", "best"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def exact_memory(runs: pd.DataFrame) -> bool:
    """Whether every run's peak memory is an exact tensor-bytes count (tag `mem_source`), not
    RSS."""
    return (
        "tags.mem_source" in runs
        and len(runs) > 0
        and bool(runs["tags.mem_source"].isin(EXACT_MEMORY).all())
    )


def max_concurrent(runs: pd.DataFrame) -> int:
    """The largest number of runs whose [start, end] intervals overlap on one node
    (`tags.node_id`)."""
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
