"""Equal-time scoring and the verdict: time-to-target, accuracy at equal time, performance profiles,
and per Holm family the paired tests that make a verdict (docs/verdict.md). Pure functions over
pandas frames, so every number is checkable by hand.

Conventions (AlgoPerf's, adapted to a study's equal-time phase, docs/phases.md):
- The training clock of a run is the cumulative `epoch_time_s` (evaluation excluded). The
  validation accuracy measured after epoch k is available at the clock reading at the end of
  epoch k.
- A run's time-to-target is the first clock reading at which `val_acc` >= the target; a miss is
  infinite. An arm's time-to-target is the median over its runs (infinite when at least half miss).
- A workload is a (model, dataset) pair; the performance profile of a method is the share of
  workloads whose time-to-target is within tau x the best method's, for tau in [1, TAU_MAX].

The verdict (docs/verdict.md): a family is a name and a list of comparisons; Holm's correction runs
within a family, never across. Each comparison reads beats / loses (two-sided paired t-test),
equivalent (two one-sided tests against ±margin), both ("beats (by less than the margin)") or
inconclusive, and an inconclusive one says how many pairs would settle it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from study.spec import method_of

BASELINE = "standard"
CONFIDENCE = 0.95
TAU_MAX = 4.0
# accuracies are fractions of a finite set: differences below 1e-9 are float noise, not effects
DIFF_DECIMALS = 9


@dataclass(frozen=True)
class Target:
    """A workload's validation-accuracy target and where it comes from."""

    val_acc: float
    origin: str


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float | None]:
    """Mean of the finite values and the half-width of its t-interval (None with fewer than two)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, None
    if len(x) == 1:
        return float(x[0]), None
    half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


# --- time ----------------------------------------------------------------------------------------
def training_clock(epochs: pd.DataFrame) -> pd.DataFrame:
    """`epochs` (run_id, epoch, val_acc, epoch_time_s) sorted by run and epoch, with `clock_s`:
    training seconds elapsed at the end of each epoch (cumulative epoch_time_s)."""
    ordered = epochs.sort_values(["run_id", "epoch"], kind="stable")
    seconds = pd.to_numeric(
        ordered["epoch_time_s"]
    )  # an epochs frame of failed runs only holds no numbers
    return ordered.assign(clock_s=seconds.groupby(ordered["run_id"], sort=False).cumsum())


def time_to_target(clock: pd.DataFrame, target: float) -> float:
    """One run's first training second with val_acc >= target (its `training_clock` rows); inf if
    never."""
    reached = clock[clock["val_acc"] >= target]
    return float(reached["clock_s"].iloc[0]) if len(reached) else math.inf


def arm_time(times: Iterable[float]) -> float:
    """An arm's time-to-target: the median of its runs' (inf when at least half miss); NaN
    without runs."""
    x = np.asarray(list(times), dtype=float)
    if len(x) == 0:
        return math.nan
    x = np.sort(x)
    mid = len(x) // 2
    return float(x[mid]) if len(x) % 2 else float((x[mid - 1] + x[mid]) / 2)


def time_to_target_table(
    runs: pd.DataFrame, epochs: pd.DataFrame, targets: Mapping[str, Target]
) -> pd.DataFrame:
    """Per arm (model, method): target, runs that reached it, arm time-to-target and its ratio to
    the best arm.

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

    A workload that a method did not run counts as unsolved for it; one no arm solved counts for
    nobody.
    """
    workloads = table["model"].nunique()
    rows = {
        method: [float((arm["ratio"] <= tau).sum()) / workloads for tau in taus]
        for method, arm in table.groupby("method", sort=False)
    }
    return pd.DataFrame(rows, index=pd.Index(list(taus), name="tau"))


def profile_score(profile: pd.Series, tau_max: float = TAU_MAX) -> float:
    """AlgoPerf's score: the area under rho(tau) over [1, tau_max], divided by tau_max − 1 (1 =
    always best)."""
    taus, rho = profile.index.to_numpy(dtype=float), profile.to_numpy(dtype=float)
    keep = (taus >= 1) & (taus <= tau_max)
    taus, rho = taus[keep], rho[keep]
    return float(
        np.sum(rho[:-1] * np.diff(taus)) / (tau_max - 1)
    )  # step function, right-continuous


# --- the verdict ------------------------------------------------------------------------------
POWER = 0.8  # the power the seeds-needed planning asks for
MAX_PAIRS = 10_000  # the seeds-needed search stops here ("more than")
MIN_STUDIES = 3  # from this many independent searches on, the test is over the studies' means
STUDY_SEPARATOR = ":"  # a pair "<study>:<index>" when a sweep runs several studies


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison (other − base) over its units (pairs, or studies' means): the
    differences, their mean and SD, the CONFIDENCE t-interval of the mean and the two-sided p of
    mean ≠ 0.

    `p` is NaN when no test is possible (n < 2); with zero variance of the differences it is 1.0
    when every difference is 0 (a tie on every seed) and 0.0 otherwise (t is infinite).
    """

    differences: tuple[float, ...]
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    p: float

    @property
    def n(self) -> int:
        return len(self.differences)


@dataclass(frozen=True)
class Comparison:
    """One question of a family: `method` (an arm label) against `baseline` on `model`."""

    model: str
    method: str
    baseline: str
    quantity: str  # what is compared, e.g. "test accuracy"
    test: PairedTest
    studies: int = (
        1  # independent searches behind the pairs; >= MIN_STUDIES: tested over their means
    )

    @property
    def over_studies(self) -> bool:
        return self.studies >= MIN_STUDIES


@dataclass(frozen=True)
class Family:
    """One question (e.g. "equal compute"): Holm's correction runs over its comparisons only."""

    name: str
    comparisons: list[Comparison]


@dataclass(frozen=True)
class SeedsNeeded:
    """Pairs for power POWER at `level` (α/m of the family) with the observed SD: to detect a true
    difference of the margin (two-sided test), and to show equivalence within ±margin when the true
    difference is 0 (both one-sided tests). None: more than MAX_PAIRS."""

    difference: int | None
    equivalence: int | None
    level: float


@dataclass(frozen=True)
class Verdict:
    """A comparison decided within its family at `alpha` against ±`margin` (in its units)."""

    family: str
    comparison: Comparison
    alpha: float
    margin: float
    tested: int  # m: the family's comparisons with a test (Holm's family size)
    p_holm: float
    p_tost: float
    p_tost_holm: float

    @property
    def differs(self) -> bool:
        p, mean = self.p_holm, self.comparison.test.mean
        return math.isfinite(p) and p < self.alpha and mean != 0

    @property
    def equivalent(self) -> bool:
        return math.isfinite(self.p_tost_holm) and self.p_tost_holm < self.alpha

    @property
    def outcome(self) -> str:
        """beats / loses (with "(by less than the margin)" when equivalence holds too), equivalent,
        or inconclusive."""
        if self.differs:
            word = "beats" if self.comparison.test.mean > 0 else "loses"
            return f"{word} (by less than the margin)" if self.equivalent else word
        return "equivalent" if self.equivalent else "inconclusive"

    @property
    def equivalence_ci(self) -> tuple[float, float]:
        """The (1 − 2α) t-interval of the mean difference: unadjusted, equivalence holds when it
        lies inside ±margin."""
        return interval(self.comparison.test, 1 - 2 * self.alpha)

    def seeds_needed(self) -> SeedsNeeded | None:
        """What would settle an inconclusive verdict (None without an SD: fewer than 2 pairs)."""
        sd = self.comparison.test.sd
        if not math.isfinite(sd):
            return None
        level = self.alpha / max(self.tested, 1)
        return SeedsNeeded(*pairs_needed(sd, self.margin, level), level)


def paired_differences(base: pd.Series, other: pd.Series) -> pd.Series:
    """other − base over the pairs (index labels) both have a finite value for, indexed by pair."""
    pairs = pd.concat({"base": base, "other": other}, axis=1).dropna()
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    return pairs["other"] - pairs["base"]


def one_sample(differences: Iterable[float]) -> PairedTest:
    """The t-test of mean ≠ 0 and the CONFIDENCE interval over the differences (see PairedTest)."""
    d = np.round(np.asarray(list(differences), dtype=float), DIFF_DECIMALS)
    n = len(d)
    if n == 0:
        return PairedTest((), math.nan, math.nan, math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    mean, half = mean_ci(d)
    if n < 2 or half is None:
        return PairedTest(tuple(d), mean, sd, math.nan, math.nan, math.nan)
    if np.ptp(d) == 0:  # every pair differs by the same amount (std would show float noise, not 0)
        return PairedTest(tuple(d), mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0)
    p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedTest(tuple(d), mean, sd, mean - half, mean + half, p)


def paired_test(base: pd.Series, other: pd.Series) -> PairedTest:
    """Paired t-test of other − base over the pairs (index labels) both have a finite value for."""
    return one_sample(paired_differences(base, other))


def interval(test: PairedTest, confidence: float) -> tuple[float, float]:
    """The t-interval of the mean difference at `confidence` (NaN with fewer than 2 units)."""
    mean, half = mean_ci(test.differences, confidence)
    return (math.nan, math.nan) if half is None else (mean - half, mean + half)


def sd_interval(sd: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The chi-square interval of an SD estimated from n values: how rough it is (from 3 values it
    runs from 0.52x to 6.3x the estimate at 95%)."""
    df = n - 1
    upper, lower = stats.chi2.ppf([(1 + confidence) / 2, (1 - confidence) / 2], df)
    return sd * math.sqrt(df / upper), sd * math.sqrt(df / lower)


def tost(test: PairedTest, margin: float) -> float:
    """p of the two one-sided tests (TOST) that the mean difference lies inside ±margin: the
    larger of the p of H0 mean <= −margin and of H0 mean >= margin. NaN with fewer than 2 units;
    with zero variance 0.0 when the common difference is inside ±margin, else 1.0."""
    d = np.asarray(test.differences)
    if len(d) < 2:
        return math.nan
    if np.ptp(d) == 0:
        return 0.0 if abs(test.mean) < margin else 1.0
    low = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    high = stats.ttest_1samp(d, margin, alternative="less").pvalue
    return float(max(low, high))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values; NaN entries (no test possible) stay NaN and are not in
    the family."""
    p = np.asarray(pvalues, dtype=float)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    adjusted = np.full(len(p), math.nan)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def decide(family: Family, alpha: float, margin: float) -> list[Verdict]:
    """Every comparison of `family` decided at `alpha`: the difference tests' p and the TOST p are
    each Holm-adjusted within the family (and nowhere else)."""
    tests = [c.test for c in family.comparisons]
    p_tost = [tost(t, margin) for t in tests]
    tested = sum(math.isfinite(t.p) for t in tests)
    return [
        Verdict(family.name, c, alpha, margin, tested, p, pt, pt_holm)
        for c, p, pt, pt_holm in zip(
            family.comparisons, holm([t.p for t in tests]), p_tost, holm(p_tost)
        )
    ]


def pairs_needed(
    sd: float, margin: float, level: float, power: float = POWER
) -> tuple[int | None, int | None]:
    """Fewest pairs (>= 2) whose paired t-tests at `level` reach `power`, from the noncentral t
    with noncentrality margin·√n / sd: (two-sided test against a true difference of `margin`, TOST
    within ±margin when the true difference is 0). TOST's power is bounded below by
    1 − 2·P(one one-sided test fails), so its count errs high. SD = 0: 2, the fewest that allow a
    test. None: more than MAX_PAIRS."""
    if sd == 0:
        return 2, 2

    def difference(n: int) -> float:
        df, ncp, crit = n - 1, margin * math.sqrt(n) / sd, stats.t.ppf(1 - level / 2, n - 1)
        return float(stats.nct.sf(crit, df, ncp) + far_tail(stats.nct.cdf(-crit, df, ncp)))

    def equivalence(n: int) -> float:
        df, ncp, crit = n - 1, margin * math.sqrt(n) / sd, stats.t.ppf(1 - level, n - 1)
        return float(1 - 2 * far_tail(stats.nct.cdf(crit, df, ncp)))

    return fewest(difference, power), fewest(equivalence, power)


def far_tail(probability: float) -> float:
    """A noncentral-t tail probability; scipy gives NaN where it underflows far from the centre."""
    return 0.0 if math.isnan(probability) else float(probability)


def fewest(power_at: Callable[[int], float], power: float) -> int | None:
    """The smallest n in [2, MAX_PAIRS] with power_at(n) >= power (power_at rises with n); None
    if there is none."""
    if power_at(MAX_PAIRS) < power:
        return None
    low, high = 2, MAX_PAIRS  # power_at(high) >= power
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if power_at(mid) >= power else (mid + 1, high)
    return high


def study_count(pairs: Iterable[str]) -> int:
    """Independent searches behind pair labels "<study>:<index>" (1 when no label names a study)."""
    return (
        len({str(p).partition(STUDY_SEPARATOR)[0] for p in pairs if STUDY_SEPARATOR in str(p)}) or 1
    )


def comparison(
    model: str, method: str, baseline: str, quantity: str, base: pd.Series, other: pd.Series
) -> Comparison:
    """`other` against `base`, paired by index label; with MIN_STUDIES studies or more the paired
    differences are averaged per study and the test is over the studies' means (pairs within a study
    share its tuned config, so they are not independent)."""
    d = paired_differences(base, other)
    studies = study_count(d.index)
    if studies >= MIN_STUDIES:
        d = d.groupby([str(p).partition(STUDY_SEPARATOR)[0] for p in d.index]).mean()
    return Comparison(model, method, baseline, quantity, one_sample(d), studies)


def is_control(label: str) -> bool:
    """A labelled arm: the same method a second time, compared with its method's own arm."""
    return method_of(label) != label


def against_baseline(label: str) -> str | None:
    """The equal-compute and equal-time families: every method's own arm against standard."""
    return None if label == BASELINE or is_control(label) else BASELINE


def against_own_method(label: str) -> str | None:
    """The control family: a control arm against its method's arm."""
    return method_of(label) if is_control(label) else None


def compare(
    runs: pd.DataFrame, value: str, quantity: str, baseline_of: Callable[[str], str | None]
) -> list[Comparison]:
    """Per model, every arm whose `baseline_of(label)` has runs too, against that arm, paired by
    `pair`.

    `runs`: columns model, method (the arm label), pair and `value`.
    """
    out = []
    for model, per_model in runs.groupby("model", sort=False):
        arms = {
            label: arm.set_index("pair")[value]
            for label, arm in per_model.groupby("method", sort=False)
        }
        for label, values in arms.items():
            baseline = baseline_of(label)
            if baseline in arms:
                out.append(comparison(model, label, baseline, quantity, arms[baseline], values))
    return out
