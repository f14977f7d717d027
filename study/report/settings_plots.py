"""The figures of the "at which settings" section, per arm: knob importance, validation accuracy
against each of the method's knobs (small multiples) and, for some methods, a pair view."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter
from optuna.distributions import IntDistribution

from study.report.settings import FANOVA, PED_ANOVA, ArmSearch, pair_stem
from study.report.settings_text import trials_note

COLUMNS = 3  # panels per row of the small multiples
STOPPED = dict(facecolors="none", edgecolors="0.45", marker="o", s=28)  # early-stopped trials
DONE = dict(color="C0", marker="o", s=28)
CHOSEN = dict(color="C3", marker="*", s=190, zorder=5)


def arm_figures(search: ArmSearch, out: Path) -> list[Path]:
    """The arm's figures, written to `out`: importance (when computed), knobs, pair view."""
    slug = search.slug
    paths = []
    if not search.importance.empty:
        paths.append(importance_plot(search, out / f"importance_{slug}.png"))
    paths.append(knobs_plot(search, out / f"knobs_{slug}.png"))
    if search.pair_view:
        paths.append(pair_plot(search, out / f"{pair_stem(search.pair_view)}_{slug}.png"))
    return paths


def importance_plot(search: ArmSearch, path: Path) -> Path:
    """Horizontal bars per knob: fANOVA, and PED-ANOVA where it was computed."""
    table = search.importance.iloc[::-1]  # the most important on top
    evaluators = [name for name in (FANOVA, PED_ANOVA) if table[name].notna().any()]
    fig = Figure(figsize=(6.5, 1.2 + 0.32 * len(table)), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / len(evaluators)
    for i, name in enumerate(evaluators):
        y = np.arange(len(table)) + (i - (len(evaluators) - 1) / 2) * height
        ax.barh(y, table[name].fillna(0.0), height=height, color=f"C{i}", label=name)
    ax.set_yticks(np.arange(len(table)), table.index)
    ax.set(xlabel="importance (sums to 1 per evaluator)", xlim=(0, 1))
    ax.set_title(f"{search.name}: which knobs matter\n{trials_note(search)}", fontsize="medium")
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def knobs_plot(search: ArmSearch, path: Path) -> Path:
    """Final val_acc against each of the method's knobs (and lr), one point per search trial."""
    knobs = search.own_knobs
    rows = math.ceil(len(knobs) / COLUMNS)
    columns = min(COLUMNS, len(knobs))
    fig = Figure(figsize=(3.3 * columns, 2.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, knob in zip(axes, knobs):
        for rows, style in _groups(search, knob):
            ax.scatter(_positions(search, knob, rows), 100 * rows["value"], **style)
        _knob_axis(ax, search, knob)
        ax.set(xlabel=knob, ylabel="val accuracy (%)")
        ax.grid(alpha=0.3)
    for ax in axes[len(knobs) :]:
        ax.set_axis_off()
    fig.suptitle(f"{search.name}: validation accuracy per search trial\n{trials_note(search)}")
    fig.legend(handles=_legend(), loc="outside lower center", ncols=3, fontsize="small")
    fig.savefig(path, dpi=110)
    return path


def pair_plot(search: ArmSearch, path: Path) -> Path:
    """Two knobs against each other, colour: final val_acc of the complete trials."""
    x, y = search.pair_view or ("", "")
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.add_subplot()
    points = None
    for rows, style in _groups(search, x, y):
        if style is DONE:  # colour: the final val_acc
            style = dict(c=100 * rows["value"], cmap="viridis", s=45)
        drawn = ax.scatter(rows[x], rows[y], **style)
        points = drawn if "cmap" in style and len(rows) else points
    if points is not None:
        fig.colorbar(points, ax=ax, label="final val accuracy (%)")
    _knob_axis(ax, search, x)
    ax.set(xlabel=x, ylabel=y, title=f"{search.name}: {x} × {y}")
    ax.legend(handles=_legend(), fontsize="small")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def _groups(search: ArmSearch, *knobs: str) -> list[tuple[pd.DataFrame, dict]]:
    """The trials that have `knobs`, with their style: stopped early, complete, the chosen one."""
    rows = search.trials[search.trials["value"].notna()].dropna(subset=list(knobs))
    groups = [
        (rows[rows["state"] != "COMPLETE"], STOPPED),
        (rows[rows["state"] == "COMPLETE"], DONE),
    ]
    chosen = search.chosen
    if chosen is not None and all(pd.notna(chosen[knob]) for knob in knobs):
        groups.append((chosen.to_frame().T, CHOSEN))
    return groups


def _positions(search: ArmSearch, knob: str, rows: pd.DataFrame) -> np.ndarray:
    """x of each row: the value, or a categorical choice's index (with a little jitter)."""
    choices = getattr(search.distributions[knob], "choices", None)
    if choices is None:
        return rows[knob].astype(float).to_numpy()
    index = rows[knob].map({choice: i for i, choice in enumerate(choices)}).astype(float)
    jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(index))
    return index.to_numpy() + jitter


def _knob_axis(ax: Axes, search: ArmSearch, knob: str) -> None:
    dist = search.distributions[knob]
    choices = getattr(dist, "choices", None)
    if choices is not None:
        ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        ax.set_xlim(-0.5, len(choices) - 0.5)
        return
    low, high = dist.low, dist.high  # type: ignore[attr-defined]
    if getattr(dist, "log", False):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(low / 1.3, high * 1.3)
        return
    pad = 0.5 if isinstance(dist, IntDistribution) else 0.04 * (high - low)
    ax.set_xlim(low - pad, high + pad)  # the searched range
    if isinstance(dist, IntDistribution):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend() -> list[Line2D]:
    return [
        Line2D([], [], ls="none", marker="o", color="C0", label="complete (final val_acc)"),
        Line2D(
            [], [], ls="none", marker="o", mfc="none", color="0.45", label="stopped early (last)"
        ),
        Line2D([], [], ls="none", marker="*", color="C3", ms=12, label="chosen config"),
    ]
