"""Equal-time scoring and the verdict (docs/phases.md): time-to-target, performance profiles,
paired tests with Holm's correction within a family. Pure functions over pandas frames, so every
number is checkable by hand.

Conventions (AlgoPerf's, adapted to a study's equal-time phase, whose epochs the report first
censors at the budget T):
- The training clock of a run is the cumulative `epoch_time_s` (evaluation excluded). The validation accuracy
  measured after epoch k is available at the clock reading at the end of epoch k.
- A run's time-to-target is the first clock reading at which `val_acc` >= the target; a miss is infinite.
  An arm's time-to-target is the median over its runs (infinite when at least half of them miss).
- A workload is a (model, dataset) pair; the performance profile of a method is the share of workloads whose
  time-to-target is within tau x the best method's, for tau in [1, TAU_MAX].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

BASELINE = "standard"
CONFIDENCE = 0.95
TAU_MAX = 4.0
DIFF_DECIMALS = 9  # accuracies are fractions of a finite set: differences below 1e-9 are float noise, not effects


@dataclass(frozen=True)
class Target:
    """A workload's validation-accuracy target and where it comes from."""

    val_acc: float
    origin: str


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison (other − base) over `n` pairs: mean difference, its CI and the two-sided p-value.

    `p` is NaN when no test is possible (n < 2); with zero variance of the differences it is 1.0 when every
    difference is 0 (a tie on every seed) and 0.0 otherwise (the t statistic is infinite).
    """

    n: int
    mean: float
    ci_low: float
    ci_high: float
    p: float


@dataclass(frozen=True)
class Comparison:
    """One line of the verdict: `method` against `baseline` on `model`, in one family (a budget:
    equal epochs, equal time; or control)."""

    model: str
    method: str
    budget: str  # the family: "equal epochs", "equal time" or "control"
    quantity: str  # what is compared, e.g. "test accuracy"
    test: PairedTest
    p_holm: float = math.nan
    baseline: str = BASELINE  # the arm it is compared with (a control: its method's arm)

    def verdict(self, alpha: float) -> str:
        """ "beats" / "loses" when the Holm-adjusted p is below `alpha`, else "matches (...)"."""
        if math.isfinite(self.p_holm) and self.p_holm < alpha and self.test.mean != 0:
            return "beats" if self.test.mean > 0 else "loses"
        seeds = f"{self.test.n} seed{'s' if self.test.n != 1 else ''}"
        return f"matches (no significant difference at {seeds})"


def mean_ci(values: Iterable[float]) -> tuple[float, float | None]:
    """Mean of the finite values and the half-width of its 95% t-interval (None with fewer than two)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, None
    if len(x) == 1:
        return float(x[0]), None
    half = stats.t.ppf((1 + CONFIDENCE) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


# --- time ----------------------------------------------------------------------------------------
def training_clock(epochs: pd.DataFrame) -> pd.DataFrame:
    """`epochs` (run_id, epoch, val_acc, epoch_time_s) sorted by run and epoch, with `clock_s`: training seconds
    elapsed at the end of each epoch (cumulative epoch_time_s)."""
    ordered = epochs.sort_values(["run_id", "epoch"], kind="stable")
    seconds = pd.to_numeric(
        ordered["epoch_time_s"]
    )  # an epochs frame of failed runs only holds no numbers
    return ordered.assign(clock_s=seconds.groupby(ordered["run_id"], sort=False).cumsum())


def time_to_target(clock: pd.DataFrame, target: float) -> float:
    """One run's first training second with val_acc >= target (its `training_clock` rows); inf if never."""
    reached = clock[clock["val_acc"] >= target]
    return float(reached["clock_s"].iloc[0]) if len(reached) else math.inf


def arm_time(times: Iterable[float]) -> float:
    """An arm's time-to-target: the median of its runs' (inf when at least half miss); NaN without runs."""
    x = np.asarray(list(times), dtype=float)
    if len(x) == 0:
        return math.nan
    x = np.sort(x)
    mid = len(x) // 2
    return float(x[mid]) if len(x) % 2 else float((x[mid - 1] + x[mid]) / 2)


def time_to_target_table(
    runs: pd.DataFrame, epochs: pd.DataFrame, targets: Mapping[str, Target]
) -> pd.DataFrame:
    """Per arm (model, method): target, runs that reached it, arm time-to-target and its ratio to the best arm.

    `runs`: one row per run that counts (run_id, model, method); `epochs`: their per-epoch rows.
    """
    clock = training_clock(epochs[epochs["run_id"].isin(runs["run_id"])])
    per_run = {run_id: group for run_id, group in clock.groupby("run_id", sort=False)}
    rows = []
    for (model, method), arm in runs.groupby(["model", "method"], sort=False):
        if model not in targets:
            continue
        target = targets[model].val_acc
        times = [
            time_to_target(per_run.get(run_id, clock.iloc[:0]), target) for run_id in arm["run_id"]
        ]
        rows.append(
            {
                "model": model,
                "method": method,
                "target": target,
                "n": len(times),
                "reached": sum(math.isfinite(t) for t in times),
                "time_s": arm_time(times),
            }
        )
    table = pd.DataFrame(rows, columns=["model", "method", "target", "n", "reached", "time_s"])
    best = table.groupby("model")["time_s"].transform("min")
    return table.assign(ratio=[ratio(t, b) for t, b in zip(table["time_s"], best)])


def ratio(time_s: float, best_s: float) -> float:
    """time / best time of the workload; inf for a miss or when no arm reached the target."""
    if not math.isfinite(time_s) or not math.isfinite(best_s):
        return math.inf
    return time_s / best_s if best_s > 0 else 1.0


def performance_profile(table: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """rho(method, tau): share of workloads (models of `time_to_target_table`) with ratio <= tau.

    A workload that a method did not run counts as unsolved for it; one no arm solved counts for nobody.
    """
    workloads = table["model"].nunique()
    rows = {
        method: [float((arm["ratio"] <= tau).sum()) / workloads for tau in taus]
        for method, arm in table.groupby("method", sort=False)
    }
    return pd.DataFrame(rows, index=pd.Index(list(taus), name="tau"))


def profile_score(profile: pd.Series, tau_max: float = TAU_MAX) -> float:
    """AlgoPerf's score: the area under rho(tau) over [1, tau_max], divided by tau_max − 1 (1 = always best)."""
    taus, rho = profile.index.to_numpy(dtype=float), profile.to_numpy(dtype=float)
    keep = (taus >= 1) & (taus <= tau_max)
    taus, rho = taus[keep], rho[keep]
    return float(
        np.sum(rho[:-1] * np.diff(taus)) / (tau_max - 1)
    )  # step function, right-continuous


# --- significance ----------------------------------------------------------------------------------
def paired_test(base: pd.Series, other: pd.Series) -> PairedTest:
    """Paired t-test of other − base over the pairs (index labels) both have a finite value for."""
    pairs = pd.concat({"base": base, "other": other}, axis=1).dropna()
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    d = np.round((pairs["other"] - pairs["base"]).to_numpy(dtype=float), DIFF_DECIMALS)
    n = len(d)
    if n == 0:
        return PairedTest(0, math.nan, math.nan, math.nan, math.nan)
    mean, half = mean_ci(d)
    if n < 2 or half is None:
        return PairedTest(n, mean, math.nan, math.nan, math.nan)
    if np.ptp(d) == 0:  # every pair differs by the same amount (std would show float noise, not 0)
        return PairedTest(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedTest(n, mean, mean - half, mean + half, p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values; NaN entries (no test possible) stay NaN and are not in the family."""
    p = np.asarray(pvalues, dtype=float)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def compare(
    runs: pd.DataFrame, value: str, budget: str, quantity: str, baseline: str = BASELINE
) -> list[Comparison]:
    """Per model and method other than `baseline`: the paired test of `value` against the
    baseline, paired by `pair`.

    `runs`: columns model, method, pair and `value`.
    """
    out = []
    for model, per_model in runs.groupby("model", sort=False):
        base = per_model[per_model["method"] == baseline]
        if base.empty:
            continue
        base_values = base.set_index("pair")[value]
        others = per_model[per_model["method"] != baseline]
        for method, arm in others.groupby("method", sort=False):
            test = paired_test(base_values, arm.set_index("pair")[value])
            out.append(Comparison(model, method, budget, quantity, test, baseline=baseline))
    return out


def with_holm(comparisons: list[Comparison]) -> list[Comparison]:
    """The comparisons with `p_holm` set by Holm's correction across all of them (one family)."""
    adjusted = holm([c.test.p for c in comparisons])
    return [replace(c, p_holm=p) for c, p in zip(comparisons, adjusted)]
