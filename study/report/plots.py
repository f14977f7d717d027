"""The report's figures: accuracy against time and memory, validation curves, the performance
profile, the equal-time phase's training times against T and the search progress (tunability)
per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from study import verdict
from study.phases import EQUAL_TIME, SEEDS
from study.report.frames import (
    ACC,
    COMPUTE_SPENT,
    FAILED_STATUSES,
    TIME,
    VAL,
    EqualTime,
    arm_order,
    search_progress,
    spent_column,
)

MARKERS = "osD^vPX*<>"


PROFILE_PLOT = "performance_profile.png"


PROGRESS_PLOT = "search_progress_{model}.png"
EQUAL_TIME_PLOT = "equal_time.png"


def scatter_plot(trials: pd.DataFrame, x_key: str, x_label: str, path: Path) -> Path:
    """Accuracy vs `x_key`, one point per finished run: colour per method, marker per model; timed
    runs by test accuracy, search trials (faded) by validation accuracy (a search has no test)."""
    searched = trials["phase"] == "search"
    accuracy = trials[VAL].where(searched, trials[ACC])
    done = trials.assign(accuracy=accuracy)[
        (trials["status"] == "FINISHED") & np.isfinite(accuracy) & np.isfinite(trials[x_key])
    ]
    order = arm_order(trials)
    colours = _method_colours([method for _, method in order])
    markers = {
        model: MARKERS[i % len(MARKERS)]
        for i, model in enumerate(dict.fromkeys(m for m, _ in order))
    }
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for (model, method, phase), runs in done.groupby(["model", "method", "phase"], dropna=False):
        timed = phase in (SEEDS, EQUAL_TIME)
        ax.scatter(
            runs[x_key],
            100 * runs["accuracy"],
            color=colours[method],
            facecolors="none" if phase == EQUAL_TIME else colours[method],
            marker=markers[model],
            s=45 if timed else 20,
            alpha=1.0 if timed else 0.35,
        )
    handles = [Line2D([], [], ls="none", marker="o", color=c, label=m) for m, c in colours.items()]
    handles += [
        Line2D([], [], ls="none", marker=k, color="0.4", label=m) for m, k in markers.items()
    ]
    ax.legend(handles=handles, fontsize="small")
    ax.set(
        xlabel=x_label,
        ylabel="accuracy (%)",
        title=f"accuracy vs {x_label} (a point per run)\n"
        "test accuracy; faded: search trials, validation accuracy; hollow: equal time",
    )
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def curve_plot(epochs: pd.DataFrame, arm: str, path: Path) -> Path:
    """Validation accuracy vs epoch for one arm, one line per trial: seeds phase bold, failed
    runs dashed."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    colours = {SEEDS: "C0", EQUAL_TIME: "C1"}
    for _, hist in epochs.dropna(subset=["val_acc"]).groupby("run_id", sort=False):
        timed = hist["phase"].iloc[0] in colours
        ax.plot(
            hist["epoch"],
            100 * hist["val_acc"],
            color=colours.get(hist["phase"].iloc[0], "0.55"),
            lw=2.2 if timed else 0.8,
            ls="--" if hist["status"].iloc[0] in FAILED_STATUSES else "-",
            alpha=1.0 if timed else 0.6,
        )
    handles = [
        Line2D([], [], color="C0", lw=2.2, label="seeds phase"),
        Line2D([], [], color="C1", lw=2.2, label="equal-time phase"),
        Line2D([], [], color="0.55", lw=0.8, label="search phase"),
        Line2D([], [], color="0.3", ls="--", label="failed"),
    ]
    ax.legend(handles=handles, fontsize="small")
    ax.set(
        xlabel="epoch",
        ylabel="validation accuracy (%)",
        title=f"{arm}: validation accuracy per trial",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def profile_plot(equal: EqualTime, path: Path) -> Path:
    """The performance profile: per method, the share of workloads solved within tau x the best
    time."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    colours = _method_colours(list(equal.profile.columns))
    for method in equal.profile.columns:
        ax.step(
            equal.profile.index,
            equal.profile[method],
            where="post",
            color=colours[method],
            lw=2,
            label=method,
        )
    workloads = equal.time_to_target["model"].nunique()
    ax.set(
        xlabel="τ (time-to-target / best time on the workload)",
        ylabel="share of workloads solved",
        title=f"performance profile over {workloads} workload(s) (model × dataset)",
        xlim=(1, verdict.TAU_MAX),
        ylim=(-0.03, 1.03),
    )
    if len(equal.profile.columns):
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def progress_plots(trials: pd.DataFrame, folder: Path) -> list[Path]:
    """Per model, the tunability plot (`search_progress`): best validation accuracy so far against
    search compute spent, one step line per arm, a marker where a trial ended."""
    progress = search_progress(trials)
    search = trials[trials["phase"] == "search"]
    unit = "standard-epoch units" if spent_column(search) == COMPUTE_SPENT else "trial-epochs"
    colours = _method_colours([method for _, method in arm_order(trials)])
    paths = []
    for model, arms in progress.groupby("model", sort=True):
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        for method, arm in arms.groupby("method", sort=False):
            ax.step(
                arm["spent"],
                100 * arm["best"],
                where="post",
                color=colours[method],
                lw=2,
                marker="o",
                ms=4,
                label=method,
            )
        ax.set(
            xlabel=f"search compute spent ({unit})",
            ylabel="best validation accuracy so far (%)",
            title=f"{model}: search progress per arm",
        )
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
        path = folder / PROGRESS_PLOT.format(model=model)
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def equal_time_plot(equal: EqualTime, path: Path) -> Path:
    """Each equal-time run's training time against its model's budget T (standard: its seeds
    runs, which set T), one column per arm: what the phase achieved, not a timed assertion."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    runs = equal.runs
    arms = list(dict.fromkeys(runs["arm"])) if len(runs) else []
    for x, arm in enumerate(arms):
        of_arm = runs[runs["arm"] == arm]
        ratio = of_arm[TIME] / of_arm["model"].map(equal.budgets)
        ax.scatter(np.full(len(ratio), x), ratio, color=f"C{x % 10}", s=40)
    ax.axhline(1.0, color="0.3", ls="--", lw=1, label="T (standard's median)")
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    ax.set(
        ylabel="training time / T",
        title="equal-time phase: each run's training time against its model's budget T",
    )
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def _method_colours(methods: list[str]) -> dict[str, tuple[float, ...]]:
    palette = colormaps["tab10"]
    return {method: palette(i % 10) for i, method in enumerate(dict.fromkeys(methods))}
