"""The report's timing checks on constructed data: slot time spent training, and the 3-MAD flag."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study.report.timing import flag_times, most_overlapping, phase_slot_use, slot_use

T0 = pd.Timestamp("2026-12-06 10:00:00", tz="UTC")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def intervals(rows: list[tuple[float, float, str | None, float]]) -> pd.DataFrame:
    """(start s, end s, node, training s) per run."""
    return pd.DataFrame(
        [{"start": at(a), "end": at(b), "node": node, "train_s": t} for a, b, node, t in rows],
        columns=["start", "end", "node", "train_s"],
    )


def test_slot_use_counts_wall_time_times_the_slots_every_node_held():
    use = slot_use(
        intervals(
            [
                (0, 10, "a", 8.0),  # node a: two runs at once, then a third as they end
                (0, 10, "a", 8.0),
                (10, 20, "a", 9.0),
                (5, 15, "b", 7.0),  # node b: one at a time
                (16, 18, "b", 1.0),
                (2, 4, None, 1.0),  # no node recorded (a run from before node ids were logged)
            ]
        )
    )
    assert (use.runs, use.wall_s, use.slots, use.train_s) == (6, 20.0, 4, 34.0)
    assert use.slot_s == 80.0 and use.share == pytest.approx(34 / 80)


def test_a_run_that_starts_as_another_ends_shares_no_slot():
    starts = pd.Series([at(0), at(10)])
    assert most_overlapping(starts, pd.Series([at(10), at(20)])) == 1
    assert most_overlapping(starts, pd.Series([at(11), at(20)])) == 2


def test_slot_use_without_runs_or_end_times():
    assert math.isnan(slot_use(intervals([])).share)
    unfinished = intervals([(0, 10, None, 5.0)]).assign(end=pd.NaT)  # a run killed with the driver
    assert (slot_use(unfinished).runs, math.isnan(slot_use(unfinished).share)) == (0, True)


def test_phase_slot_use_sums_every_run_epochs_per_phase():
    trials = pd.DataFrame(
        {
            "run_id": ["s1", "s2", "t1", "t2"],
            "phase": ["search", "search", "seeds", "seeds"],
            "start_time": [at(0), at(0), at(30), at(30)],
            "end_time": [at(20), at(10), at(40), at(40)],
            "tags.node_id": ["n", "n", "n", "n"],
        }
    )
    # s2 was stopped early after two epochs: its epochs count; t2 logged no epoch
    epochs = pd.DataFrame(
        {"run_id": ["s1", "s1", "s2", "s2", "t1"], "epoch_time_s": [5.0, 5.0, 2.0, 2.0, 9.0]}
    )
    use = phase_slot_use(trials, epochs)
    assert list(use) == ["search", "seeds"]
    assert (use["search"].slot_s, use["search"].train_s) == (40.0, 14.0)
    assert (use["seeds"].slot_s, use["seeds"].train_s) == (20.0, 9.0)


def arm_runs(method: str, times: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": "seed_cnn",
            "method": method,
            "pair": [str(i) for i in range(1, len(times) + 1)],
            "t": times,
        }
    )


def test_a_run_more_than_3_mads_from_its_arm_median_is_flagged_either_way():
    runs = pd.concat(
        [
            # median 10.1, MAD 0.1 (floor 0.101): 31.0 is +207 MADs away, 9.8 only -2.97
            arm_runs("standard", [10.0, 10.2, 9.8, 10.1, 31.0]),
            # median 20, MAD 1: 15 is 5 MADs below it
            arm_runs("greedy", [20.0, 21.0, 19.0, 15.0, 20.5]),
        ],
        ignore_index=True,
    )
    flagged = flag_times(runs, "t")
    assert flagged.loc[flagged["flagged"], ["method", "pair"]].values.tolist() == [
        ["standard", "5"],
        ["greedy", "4"],
    ]
    standard = flagged[flagged["method"] == "standard"]
    assert standard["median"].tolist() == [10.1] * 5
    assert standard["mads"].iloc[4] == pytest.approx(20.9 / 0.101)
    assert standard["mads"].iloc[2] == pytest.approx(-0.3 / 0.101)


def test_equal_times_flag_no_small_difference():
    """MAD 0 (most runs equal): the MAD counts as 1% of the median, so 2% off is no outlier."""
    flagged = flag_times(arm_runs("standard", [10.0, 10.0, 10.0, 10.0, 10.2]), "t")
    assert not flagged["flagged"].any()
    assert flagged["mads"].iloc[4] == pytest.approx(2.0)
