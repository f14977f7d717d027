"""How far the report's clocks can be trusted: the share of each phase's slot time spent training,
and the timed runs whose training time stands out from their arm's (more than 3 MADs from its
median), with the machine load they trained under. Pure pandas over the trials and epochs frames."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_LIMIT = 3.0  # a run this many MADs from its arm's median training time is flagged
MAD_FLOOR = 0.01  # the MAD counts as at least this share of the median (equal times flag nothing)
PHASE_ORDER = ("search", "seeds", "equal_time")
LOAD_KEYS = ("load_avg_start", "load_avg_end", "steal_s")  # fit's final metrics (MachineLoad)


@dataclass(frozen=True)
class SlotUse:
    """A phase's runs: `wall_s` from the first start to the last end, `slots` runs the nodes held at
    once (per node the most that overlapped, summed), `train_s` the training seconds they summed."""

    runs: int
    wall_s: float
    slots: int
    train_s: float

    @property
    def slot_s(self) -> float:
        return self.wall_s * self.slots

    @property
    def share(self) -> float:
        """Training seconds / slot-seconds (NaN without slot time)."""
        return self.train_s / self.slot_s if self.slot_s > 0 else math.nan


def slot_use(intervals: pd.DataFrame) -> SlotUse:
    """`intervals`: one row per run with `start`, `end` (Timestamps), `node` and `train_s`."""
    timed = intervals.dropna(subset=["start", "end"])
    if timed.empty:
        return SlotUse(0, 0.0, 0, 0.0)
    wall = (timed["end"].max() - timed["start"].min()).total_seconds()
    slots = sum(
        most_overlapping(group["start"], group["end"])
        for _, group in timed.groupby("node", dropna=False)  # no node recorded: one group
    )
    return SlotUse(len(timed), wall, slots, float(timed["train_s"].sum()))


def most_overlapping(starts: pd.Series, ends: pd.Series) -> int:
    """The most [start, end] intervals that overlap (one ending as another starts: no overlap)."""
    events = sorted([(t, 1) for t in starts.dropna()] + [(t, -1) for t in ends.dropna()])
    level = most = 0
    for _, change in events:  # an end (-1) sorts before a start (+1) at the same instant
        level += change
        most = max(most, level)
    return most


def phase_slot_use(trials: pd.DataFrame, epochs: pd.DataFrame) -> dict[str, SlotUse]:
    """SlotUse per phase (search, seeds, equal_time, then any other), from the trial runs' MLflow
    start and end times and their summed `epoch_time_s` (early-stopped and failed runs included)."""
    train = pd.to_numeric(epochs["epoch_time_s"]).groupby(epochs["run_id"]).sum()
    nodes = trials["tags.node_id"] if "tags.node_id" in trials else pd.Series(None, trials.index)
    intervals = pd.DataFrame(
        {
            "phase": trials["phase"],
            "start": trials["start_time"],
            "end": trials["end_time"],
            "node": nodes,
            "train_s": trials["run_id"].map(train).fillna(0.0),
        }
    )
    rank = {phase: i for i, phase in enumerate(PHASE_ORDER)}
    phases = sorted(intervals["phase"].dropna().unique(), key=lambda p: (rank.get(p, len(rank)), p))
    return {phase: slot_use(intervals[intervals["phase"] == phase]) for phase in phases}


def flag_times(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """`runs` (model, method, `value`) with `median`, `mads` (signed distance from the arm's median
    in MADs; the MAD is at least MAD_FLOOR x the median) and `flagged` (|mads| > MAD_LIMIT)."""
    times = pd.to_numeric(runs[value])
    arm = [runs["model"], runs["method"]]
    median = times.groupby(arm).transform("median")
    mad = (times - median).abs().groupby(arm).transform("median")
    spread = np.maximum(mad, MAD_FLOOR * median.abs())
    mads = (times - median) / spread.where(spread > 0)
    return runs.assign(median=median, mads=mads, flagged=mads.abs() > MAD_LIMIT)
