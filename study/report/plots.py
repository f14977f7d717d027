"""The report's figures: accuracy against time and memory, validation curves, the performance profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from study import verdict
from study.report.frames import ACC, FAILED_STATUSES, VAL, EqualTime, arm_order

MARKERS = "osD^vPX*<>"


PROFILE_PLOT = "performance_profile.png"


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
        seeds = phase != "search"
        ax.scatter(
            runs[x_key],
            100 * runs["accuracy"],
            color=colours[method],
            marker=markers[model],
            s=45 if seeds else 20,
            alpha=1.0 if seeds else 0.35,
        )
    handles = [Line2D([], [], ls="none", marker="o", color=c, label=m) for m, c in colours.items()]
    handles += [
        Line2D([], [], ls="none", marker=k, color="0.4", label=m) for m, k in markers.items()
    ]
    ax.legend(handles=handles, fontsize="small")
    ax.set(
        xlabel=x_label,
        ylabel="accuracy (%)",
        title=f"accuracy vs {x_label} (one point per run)\n"
        "test accuracy; faded: search trials, validation accuracy",
    )
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def curve_plot(epochs: pd.DataFrame, arm: str, path: Path) -> Path:
    """Validation accuracy vs epoch for one arm, one line per trial: seeds phase bold, failed runs dashed."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for _, hist in epochs.dropna(subset=["val_acc"]).groupby("run_id", sort=False):
        seeds = hist["phase"].iloc[0] == "seeds"
        ax.plot(
            hist["epoch"],
            100 * hist["val_acc"],
            color="C0" if seeds else "0.55",
            lw=2.2 if seeds else 0.8,
            ls="--" if hist["status"].iloc[0] in FAILED_STATUSES else "-",
            alpha=1.0 if seeds else 0.6,
        )
    handles = [
        Line2D([], [], color="C0", lw=2.2, label="seeds phase"),
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
    """The performance profile: per method, the share of workloads solved within tau x the best time."""
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


def _method_colours(methods: list[str]) -> dict[str, tuple[float, ...]]:
    palette = colormaps["tab10"]
    return {method: palette(i % 10) for i, method in enumerate(dict.fromkeys(methods))}
