"""Across workloads (model × data set), per method against standard: the probability of improvement
P(method > standard) and the interquartile mean (IQM) of the accuracy difference, each with a
stratified-bootstrap 95% CI, as rliable defines them (docs/verdict.md). Pure functions over pandas.

P(X > Y) on one workload is the Mann–Whitney statistic over every (method run, standard run) pair,
ties counting 1/2; it is averaged over workloads. The bootstrap resamples runs within each workload
and arm (each its own sample to `scipy.stats.bootstrap`, so no workload borrows another's runs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from study.verdict import BASELINE, CONFIDENCE, against_baseline, paired_differences

RESAMPLES = 9999
BOOTSTRAP_SEED = 0  # the same CI every time the report is rebuilt
TRIM = 0.25  # the IQM: the mean of the middle 50%


@dataclass(frozen=True)
class Estimate:
    """A statistic and its bootstrap CI (NaN when a workload has fewer than 2 runs of an arm)."""

    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class MethodSummary:
    """One method against standard over the workloads that ran both."""

    method: str
    workloads: int
    improvement: Estimate  # P(method > standard), averaged over workloads
    iqm: Estimate  # IQM of the paired differences (method − standard), pooled over workloads


def improvement(method: np.ndarray, base: np.ndarray) -> np.ndarray:
    """P(a run of `method` beats a run of `base`) over all pairs of runs (last axis), ties 1/2;
    leading axes (bootstrap resamples) broadcast."""
    diff = method[..., :, None] - base[..., None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))


def mean_improvement(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """`improvement` averaged over workloads; `samples` alternate method, base per workload."""
    moved = [np.moveaxis(s, axis, -1) for s in samples]
    return np.mean([improvement(m, b) for m, b in zip(moved[::2], moved[1::2])], axis=0)


def pooled_iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """The interquartile mean of every workload's differences pooled."""
    return stats.trim_mean(np.concatenate(samples, axis=axis), TRIM, axis=axis)


def estimate(samples: list[np.ndarray], statistic) -> Estimate:
    """`statistic` of the samples and its stratified percentile-bootstrap CONFIDENCE interval."""
    value = float(statistic(*samples))
    if any(len(s) < 2 for s in samples):  # scipy's bootstrap needs 2 observations per sample
        return Estimate(value, math.nan, math.nan)
    result = stats.bootstrap(
        samples,
        statistic,
        n_resamples=RESAMPLES,
        vectorized=True,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    interval = result.confidence_interval
    return Estimate(value, float(interval.low), float(interval.high))


def summarize(runs: pd.DataFrame, value: str) -> list[MethodSummary]:
    """Per method (arms compared with standard), over the models (workloads) that ran both.

    `runs`: columns model, method (the arm label), pair and `value`.
    """
    per_arm = {key: arm.set_index("pair")[value] for key, arm in runs.groupby(["model", "method"])}
    methods = dict.fromkeys(m for m in runs["method"] if against_baseline(m) == BASELINE)
    out = []
    for method in methods:
        models = [m for m, k in per_arm if k == method and (m, BASELINE) in per_arm]
        arms = [(per_arm[m, method].dropna(), per_arm[m, BASELINE].dropna()) for m in models]
        arms = [(x, y) for x, y in arms if len(x) and len(y)]
        if not arms:
            continue
        samples = [s.to_numpy(dtype=float) for pair in arms for s in pair]
        diffs = [paired_differences(y, x).to_numpy(dtype=float) for x, y in arms]
        diffs = [d for d in diffs if len(d)]
        iqm = estimate(diffs, pooled_iqm) if diffs else Estimate(math.nan, math.nan, math.nan)
        out.append(MethodSummary(method, len(arms), estimate(samples, mean_improvement), iqm))
    return out
