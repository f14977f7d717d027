"""study.verdict's pure functions against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from study import across_workloads, verdict

ALPHA, MARGIN = 0.05, 1.0
# Five standard-normal draws, centred and scaled to mean 0 and SD 1 exactly: noise of a known SD.
Z = np.array([-1.2, -0.5, 0.0, 0.6, 1.1])
Z = (Z - Z.mean()) / Z.std(ddof=1)
BASE = pd.Series([80.0, 82.0, 79.0, 81.0, 80.5], index=["1", "2", "3", "4", "5"])


def clock(val_accs: list[float], epoch_s: list[float]) -> pd.DataFrame:
    epochs = pd.DataFrame(
        {
            "run_id": "r",
            "epoch": range(1, len(val_accs) + 1),
            "val_acc": val_accs,
            "epoch_time_s": epoch_s,
        }
    )
    return verdict.training_clock(epochs.iloc[::-1])  # unsorted on purpose


def test_time_to_target_is_the_first_epoch_end_at_or_above_the_target():
    run = clock([0.5, 0.8, 0.7, 0.9], [1.0, 2.0, 3.0, 4.0])
    assert list(run["clock_s"]) == [1.0, 3.0, 6.0, 10.0]
    assert verdict.time_to_target(run, 0.8) == 3.0
    assert verdict.time_to_target(run, 0.95) == math.inf


def test_arm_time_is_infinite_when_half_the_runs_miss():
    assert verdict.arm_time([3.0, 1.0, math.inf]) == 3.0
    assert verdict.arm_time([1.0, math.inf]) == math.inf
    assert verdict.arm_time([1.0, 2.0, math.inf, math.inf]) == math.inf
    assert verdict.arm_time([1.0, 2.0, 4.0, math.inf]) == 3.0


def test_holm_by_hand():
    # m = 3 tested: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> running max 0.06
    assert verdict.holm([0.04, 0.01, math.nan, 0.03]) == pytest.approx(
        [0.06, 0.03, math.nan, 0.06], nan_ok=True
    )
    assert verdict.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1


def test_paired_test_edge_cases():
    base = pd.Series([0.5, 0.6, 0.7], index=["1", "2", "3"])
    one = verdict.paired_test(base, pd.Series([0.9], index=["2"]))
    assert one.n == 1 and one.mean == pytest.approx(0.3) and math.isnan(one.p)  # n < 2: no test
    tie = verdict.paired_test(base, base.copy())
    assert (tie.n, tie.mean, tie.p) == (3, 0.0, 1.0)
    shift = verdict.paired_test(base, base + 0.05)
    assert shift.p == 0.0 and shift.mean == pytest.approx(0.05)
    [decided] = verdict.decide(family(comparison_of(one)), ALPHA, MARGIN)
    assert decided.outcome == "inconclusive" and decided.seeds_needed() is None  # no SD from 1


def test_profile_and_score():
    table = pd.DataFrame(
        {
            "model": ["a", "a", "b", "b"],
            "method": ["s", "x", "s", "x"],
            "ratio": [1.0, 2.0, math.inf, 1.0],
        }
    )
    profile = verdict.performance_profile(table, [1.0, 2.0, 3.0, 4.0])
    assert list(profile["s"]) == [0.5, 0.5, 0.5, 0.5]
    assert list(profile["x"]) == [0.5, 1.0, 1.0, 1.0]
    assert verdict.profile_score(profile["x"]) == pytest.approx((0.5 + 1.0 + 1.0) / 3)


# --- the verdict: four outcomes, Holm within a family, seeds needed -------------------------------
def comparison_of(test: verdict.PairedTest, method: str = "x") -> verdict.Comparison:
    return verdict.Comparison("m", method, "standard", "test accuracy", test)


def family(*comparisons: verdict.Comparison, name: str = "equal compute") -> verdict.Family:
    return verdict.Family(name, list(comparisons))


def decide_one(differences: np.ndarray) -> verdict.Verdict:
    """The verdict of `BASE + differences` against `BASE`, alone in its family."""
    test = verdict.paired_test(BASE, BASE + differences)
    [decided] = verdict.decide(family(comparison_of(test)), ALPHA, MARGIN)
    return decided


def test_planted_two_point_effect_beats():
    decided = decide_one(2.0 + 0.3 * Z)  # +2 points, SD 0.3, 5 seeds
    assert decided.comparison.test.mean == pytest.approx(2.0)
    assert decided.comparison.test.sd == pytest.approx(0.3)
    assert decided.outcome == "beats"
    assert decide_one(-2.0 + 0.3 * Z).outcome == "loses"


def test_identical_arms_with_small_noise_are_equivalent():
    decided = decide_one(0.1 * Z)  # noise SD 0.1, margin 1
    assert decided.outcome == "equivalent"
    # unadjusted, TOST is the (1 - 2 alpha) CI inside the margin: here well inside
    low, high = decided.equivalence_ci
    half = stats.t.ppf(0.95, 4) * 0.1 / math.sqrt(5)
    assert (low, high) == pytest.approx((-half, half))
    assert -MARGIN < low < high < MARGIN


def test_noisy_arms_are_inconclusive_with_the_seeds_needed():
    decided = decide_one(5.0 * Z)  # SD 5: nothing is settled by 5 seeds
    assert decided.outcome == "inconclusive"
    needed = decided.seeds_needed()
    assert needed.level == ALPHA  # alone in its family: alpha / 1
    # G*Power's paired t-test, dz = 1 / 5 = 0.2, two-sided alpha 0.05, power 0.8: 199 pairs
    assert needed.difference == 199
    # TOST within ±0.2 SD at true 0: at least the normal approximation (z.95 + z.90)^2 / 0.2^2 = 214
    assert 214 < needed.equivalence < 220
    assert needed.difference > 5 and needed.equivalence > 5


def test_seeds_needed_scales_with_the_family_and_handles_sd_zero():
    tighter = verdict.pairs_needed(5.0, MARGIN, ALPHA / 4)  # a family of 4: alpha / 4 each
    assert tighter[0] > 199 and tighter[1] > 216
    assert verdict.pairs_needed(0.0, MARGIN, ALPHA) == (2, 2)  # no variance: any 2 pairs settle it
    assert verdict.pairs_needed(1000.0, 0.01, ALPHA) == (None, None)  # beyond MAX_PAIRS
    tie = decide_one(np.zeros(5))  # zero variance, every difference 0
    assert (tie.comparison.test.p, tie.p_tost, tie.outcome) == (1.0, 0.0, "equivalent")
    shift = decide_one(np.full(5, 3.0))  # zero variance, outside the margin
    assert (shift.comparison.test.p, shift.p_tost, shift.outcome) == (0.0, 1.0, "beats")


def test_a_difference_inside_the_margin_reads_beats_by_less_than_the_margin():
    decided = decide_one(0.5 + 0.05 * Z)
    assert decided.differs and decided.equivalent
    assert decided.outcome == "beats (by less than the margin)"
    assert decide_one(-0.5 + 0.05 * Z).outcome == "loses (by less than the margin)"


def test_tost_p_is_the_larger_one_sided_p():
    test = verdict.one_sample([0.2, 0.9, -0.1, 0.6])
    mean, se = np.mean(test.differences), np.std(test.differences, ddof=1) / 2
    low = stats.t.sf((mean + MARGIN) / se, 3)  # H0: mean <= -margin
    high = stats.t.cdf((mean - MARGIN) / se, 3)  # H0: mean >= margin
    assert verdict.tost(test, MARGIN) == pytest.approx(max(low, high))


def test_holm_runs_within_each_family_and_not_across():
    # p = 0.0305 and 0.0429 share a family; p = 0.0202 is alone in another
    a = comparison_of(verdict.one_sample([2.0, 3.0, 1.0, 4.0]), "a")
    b = comparison_of(verdict.one_sample([1.0, 2.0, 2.2]), "b")
    c = comparison_of(verdict.one_sample([1.5, 2.0, 2.5]), "c")
    p = {k: x.test.p for k, x in zip("abc", (a, b, c))}
    assert p == pytest.approx({"a": 0.0305, "b": 0.0429, "c": 0.0202}, abs=5e-4)
    pair = verdict.decide(family(a, b), ALPHA, MARGIN)
    [alone] = verdict.decide(family(c, name="equal time"), ALPHA, MARGIN)
    # within the pair: 2 x 0.0305 = 0.061, then max(0.061, 1 x 0.0429): neither is significant
    assert [v.p_holm for v in pair] == pytest.approx([2 * p["a"], 2 * p["a"]])
    assert [v.outcome for v in pair] == ["inconclusive", "inconclusive"]
    assert [v.tested for v in pair] == [2, 2]
    assert pair[0].seeds_needed().level == ALPHA / 2
    # alone, c is adjusted by nothing; pooled with the pair it would be 3 x 0.0202 = 0.061
    assert alone.p_holm == pytest.approx(p["c"]) and alone.outcome == "beats"
    assert alone.family == "equal time"


def test_the_control_family_compares_a_labelled_arm_with_its_method():
    runs = pd.DataFrame(
        {
            "model": "m",
            "method": ["standard"] * 3 + ["standard:control"] * 3 + ["greedy"] * 3,
            "pair": ["1", "2", "3"] * 3,
            "points": [80.0, 81.0, 82.0, 80.5, 80.0, 82.0, 70.0, 71.0, 72.0],
        }
    )
    main = verdict.compare(runs, "points", "test accuracy", verdict.against_baseline)
    control = verdict.compare(runs, "points", "test accuracy", verdict.against_own_method)
    assert [(c.method, c.baseline) for c in main] == [("greedy", "standard")]
    assert [(c.method, c.baseline) for c in control] == [("standard:control", "standard")]
    assert control[0].test.differences == (0.5, -1.0, 0.0)


def test_three_studies_or_more_are_tested_over_the_study_means():
    pairs = [f"{study}:{seed}" for study in range(3) for seed in (1, 2)]
    base = pd.Series([80.0, 81.0, 79.0, 80.0, 82.0, 83.0], index=pairs)
    other = base + [1.0, 2.0, 0.0, 1.0, 3.0, 2.0]  # study means of the differences: 1.5, 0.5, 2.5
    found = verdict.comparison("m", "x", "standard", "test accuracy", base, other)
    assert found.studies == 3 and found.over_studies
    assert found.test.differences == (1.5, 0.5, 2.5)
    assert found.test.p == pytest.approx(stats.ttest_1samp([1.5, 0.5, 2.5], 0).pvalue)
    two = verdict.comparison("m", "x", "standard", "test accuracy", base[:4], other[:4])
    assert two.studies == 2 and not two.over_studies and two.test.n == 4  # over seeds only
    one = verdict.comparison("m", "x", "standard", "test accuracy", BASE, BASE + 1)
    assert one.studies == 1 and one.test.n == 5


def test_sd_interval_says_how_rough_an_sd_from_three_pairs_is():
    low, high = verdict.sd_interval(1.0, 3)
    assert low == pytest.approx(math.sqrt(2 / stats.chi2.ppf(0.975, 2)))  # 0.52
    assert high == pytest.approx(math.sqrt(2 / stats.chi2.ppf(0.025, 2)))  # 6.28


# --- across workloads --------------------------------------------------------------------------
def test_probability_of_improvement_and_its_stratified_bootstrap_ci():
    runs = pd.DataFrame(
        {
            "model": ["a"] * 4 + ["b"] * 4,
            "method": ["x", "x", "standard", "standard"] * 2,
            "pair": ["1", "2"] * 4,
            "points": [90.0, 80.0, 85.0, 70.0, 50.0, 50.0, 60.0, 60.0],
        }
    )
    [summary] = across_workloads.summarize(runs, "points")
    # a: 90 > 85, 90 > 70, 80 < 85, 80 > 70 -> 3/4; b: x never beats -> 0; mean over workloads 0.375
    assert (summary.method, summary.workloads) == ("x", 2)
    assert summary.improvement.value == 0.375
    # b is 0 in every resample; a's resample is 0 when both x runs are 80 and both standard runs
    # 85 (1/16 > 2.5%), 1 when both x runs are 90 (1/4 > 2.5%): the CI of the mean is [0, 0.5]
    assert (summary.improvement.ci_low, summary.improvement.ci_high) == (0.0, 0.5)
    # paired differences 5, 10 (a) and -10, -10 (b): the IQM drops one from each end -> -2.5
    assert summary.iqm.value == pytest.approx(-2.5)


def test_probability_of_improvement_counts_ties_as_half_and_needs_two_runs_for_a_ci():
    assert across_workloads.improvement(np.array([1.0, 2.0]), np.array([1.0])) == 0.75
    runs = pd.DataFrame(
        {"model": "a", "method": ["x", "standard"], "pair": "best", "points": [70.0, 60.0]}
    )
    [summary] = across_workloads.summarize(runs, "points")
    assert summary.improvement.value == 1.0 and math.isnan(summary.improvement.ci_low)
