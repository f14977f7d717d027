"""study.verdict's pure functions against numbers worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study import verdict


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
    comparison = verdict.Comparison("m", "x", "equal epochs", "test accuracy", one, math.nan)
    assert comparison.verdict(0.05) == "matches (no significant difference at 1 seed)"


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
