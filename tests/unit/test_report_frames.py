"""study.report.frames on constructed trials frames: which runs count, the equal-time family from
the equal-time phase's runs, and the search progress behind the tunability plot."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from study import verdict
from study.report import frames, tables, verdict_text
from study.report.frames import ACC, MEM, TIME, VAL
from trainables.training import DivergedError

DIVERGED_REASON = "DivergedError: train_loss is nan at epoch 2 (m/greedy)"


def trials(rows: list[dict]) -> pd.DataFrame:
    """A trials frame as `trials_frame` and `with_chance` make it, from short rows."""
    frame = pd.DataFrame(
        [
            {
                "run_id": f"r{i}",
                "model": "m",
                "phase": "seeds",
                "status": "FINISHED",
                "error": None,
                "params.dataset": "digits",
                "start_time": pd.Timestamp("2026-12-06") + pd.Timedelta(seconds=i),
                "end_time": pd.Timestamp("2026-12-06") + pd.Timedelta(seconds=i + 100),
                TIME: 10.0,
                MEM: 50.0,
                VAL: row.get("acc", math.nan),
                ACC: row.get("acc", math.nan),
                **row,
            }
            for i, row in enumerate(rows)
        ]
    )
    frame["seed"] = frame["seed"].astype("Int64")
    frame["pair"] = frame["seed"].astype(str)  # the seed's index: seeds 1.. are indices 1..
    frame["diverged"] = (frame["status"] == "FAILED") & frame["error"].fillna("").str.startswith(
        frames.DIVERGED
    )
    return frame.assign(chance_acc=0.1)


def test_the_diverged_prefix_is_the_error_the_trainable_raises():
    assert DivergedError.__name__ == frames.DIVERGED


def test_a_diverged_run_counts_with_chance_accuracy_and_other_failures_do_not():
    rows = [{"method": "standard", "seed": s, "acc": 0.9} for s in range(1, 6)]
    rows += [{"method": "greedy", "seed": s, "acc": 0.8} for s in range(1, 5)]
    rows += [
        # a diverged run logged a test accuracy before failing: it must not count
        {"method": "greedy", "seed": 5, "acc": 0.7, "status": "FAILED", "error": DIVERGED_REASON},
        {"method": "greedy", "seed": 6, "acc": 0.8, "status": "FAILED", "error": "node lost"},
    ]
    arms = {arm.method: arm for arm in frames.select_arms(trials(rows))}
    greedy = arms["greedy"]
    assert len(greedy.used) == 5 and greedy.diverged == 1 and len(greedy.failed_runs) == 1
    diverged = greedy.used[greedy.used["seed"] == 5].iloc[0]
    assert (diverged[ACC], diverged[VAL]) == (0.1, 0.1)  # chance: 1 / 10 classes
    assert math.isnan(diverged[TIME]) and math.isnan(diverged[MEM])
    assert tables.failed_cell(greedy) == "1 of 5 diverged; 1 other, excluded"
    assert tables.failed_cell(arms["standard"]) == "0"
    [found] = verdict.compare(
        frames.seeds_points(list(arms.values())), "points", "acc", verdict.against_baseline
    )
    # the diverged seed is a pair: 4 x (80 - 90) and 10 - 90
    assert found.test.differences == pytest.approx((-10.0,) * 4 + (-80.0,))


def test_the_equal_time_family_comes_from_the_equal_time_phase():
    rows = [{"method": "standard", "seed": s, "acc": 0.90 + s / 100} for s in (1, 2, 3)]
    rows += [
        {"method": "layer_to_layer", "seed": s, "acc": 0.5, "phase": "seeds"} for s in (1, 2, 3)
    ]
    rows += [
        {"method": "layer_to_layer", "seed": s, "acc": 0.90 + s / 100 + 0.02, "phase": "equal_time"}
        for s in (1, 2)
    ]
    rows += [
        {
            "method": "layer_to_layer",
            "seed": 3,
            "phase": "equal_time",
            "status": "FAILED",
            "error": DIVERGED_REASON,
        }
    ]
    frame = trials(rows)
    seeds = frames.seeds_points(frames.select_arms(frame[frame["phase"] == "seeds"]))
    [found] = frames.rerun_comparisons(frame, seeds)
    assert (found.method, found.baseline, found.quantity) == (
        "layer_to_layer",
        "standard",
        "test accuracy",
    )
    # the equal-time reruns (not the seeds phase's 50%) against standard's seeds; seed 3 at chance
    assert found.test.differences == pytest.approx((2.0, 2.0, 10.0 - 93.0))
    assert frames.rerun_comparisons(frame[frame["phase"] == "seeds"], seeds) == []


def test_search_progress_is_the_best_final_val_acc_so_far_against_compute_spent():
    rows = [
        # (ended at, trial-epochs, final val_acc or NaN when stopped early)
        {"method": "standard", "end_time": pd.Timestamp(3), "metrics.epoch": 4, "acc": 0.7},
        {"method": "standard", "end_time": pd.Timestamp(1), "metrics.epoch": 2, "acc": math.nan},
        {"method": "standard", "end_time": pd.Timestamp(2), "metrics.epoch": 4, "acc": 0.8},
        {"method": "standard", "end_time": pd.Timestamp(4), "metrics.epoch": 4, "acc": 0.75},
        {"method": "standard", "end_time": pd.Timestamp(5), "metrics.epoch": 2, "acc": math.nan},
        {"method": "greedy", "end_time": pd.Timestamp(1), "metrics.epoch": 4, "acc": 0.6},
    ]
    frame = trials([{**row, "phase": "search", "seed": 0} for row in rows])
    progress = frames.search_progress(frame)
    standard = progress[progress["method"] == "standard"]
    assert list(standard["spent"]) == [2, 6, 10, 14, 16]
    assert list(standard["best"].fillna(-1)) == [-1, 0.8, 0.8, 0.8, 0.8]
    assert list(progress.loc[progress["method"] == "greedy", "best"]) == [0.6]
    computed = frame.assign(**{frames.COMPUTE_SPENT: [1.5, 0.5, 1.5, 1.5, 0.5, 2.0]})
    assert list(frames.search_progress(computed)["spent"])[:4] == [0.5, 2.0, 3.5, 5.0]
    unlogged = frame.assign(**{frames.COMPUTE_SPENT: math.nan})  # e.g. older trials: epochs
    assert list(frames.search_progress(unlogged)["spent"])[:5] == [2, 6, 10, 14, 16]


def test_the_seeds_family_is_named_after_the_budget_unit():
    frame = trials([{"method": "standard", "seed": 1, "acc": 0.9}])
    assert frames.budget_family(frame) == "equal epochs"  # runs from before FLOPs budgets
    assert frames.budget_family(frame.assign(**{"params.budget_unit": "epochs"})) == "equal epochs"
    assert frames.budget_family(frame.assign(**{"params.budget_unit": "flops"})) == "equal compute"


def decided_line(method: str, differences: list[float], pairs: list[str]) -> str:
    base = pd.Series(80.0, index=pairs)
    found = verdict.comparison("m", method, "standard", "test accuracy", base, base + differences)
    [decided] = verdict.decide(verdict.Family("control", [found]), 0.05, 1.0)
    return verdict_text.verdict_line(decided)


def test_a_control_that_comes_out_beats_is_called_a_false_positive_of_the_control():
    pairs = ["1", "2", "3", "4", "5"]
    line = decided_line("standard:control", [3.0, 3.1, 2.9, 3.2, 2.8], pairs)
    assert ": beats; margin ±1.00 points;" in line
    assert "a false positive of the control" in line
    assert "false positive" not in decided_line("greedy", [3.0, 3.1, 2.9, 3.2, 2.8], pairs)
    assert "false positive" not in decided_line("standard:control", [0.1, -0.1, 0, 0.05, 0], pairs)


def test_verdict_lines_say_whether_the_test_is_over_studies_or_seeds():
    studies = [f"{k}:{i}" for k in range(3) for i in (1, 2)]
    line = decided_line("greedy", [1.0, -2.0, 3.0, 0.0, -1.0, 2.0], studies)
    assert "3 study means: 3 studies, the test is over the studies' means" in line
    assert "inconclusive" in line and "Studies needed for power 0.8" in line
    assert "(from 3 study means;" in line
    two = decided_line("greedy", [1.0, -2.0, 3.0, 0.0], studies[:4])
    assert "4 pairs from 2 studies: the test is over seeds only" in two
    assert "Seeds needed for power 0.8" in two
