"""The report's prose in one place: every table's caption and the paragraphs that say how numbers
were made. Functions take the few values a caption quotes; the tables module fills in the rest."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from study.verdict import BASELINE, CONFIDENCE, TAU_MAX

if TYPE_CHECKING:
    from study.report.timing import SlotUse

SEEDS_FALLBACK = (
    "† no seeds-phase runs for this arm: the best search-phase trial by validation accuracy "
    "is shown instead (n = 1, no CI; no test accuracy, which search trials never measure)."
)
NOTHING_FLAGGED = "No run's training time is more than {limit:g} MADs from its arm's median."
NO_PAIRS = "No model has both {baseline} and one of {compared}."
NO_TARGET = "No arm has a target (the target defaults need a finished standard run)."
NO_BUDGET = f"No model has a finished {BASELINE} run to set the budget."
NOTHING_TO_COMPARE = f"No model has both {BASELINE} and another method: nothing to compare."
TRAINING_TIME = (
    "- Training time: the sum of `epoch_time_s`, the training loop only (evaluation, checkpoints "
    "and start-up excluded), with CUDA synchronised at both ends."
)


def table1(datasets: str) -> str:
    return (
        f"**Table 1.** Test accuracy (%, mean ± {CONFIDENCE:.0%} CI over seeds, t-distribution), "
        "total training time (s, mean) and peak memory (MB, mean; `RSS`: process high-water mark, "
        f"not exact) per model and training method on {datasets}. `n`: runs in the statistics; "
        "`failed`: failed runs of the same phase, excluded from the statistics."
    )


def table2() -> str:
    return (
        f"**Table 2.** Paired differences against {BASELINE} training per model (runs paired by "
        f"seed): test accuracy in points and peak memory as a ratio (method / {BASELINE}), mean ± "
        f"{CONFIDENCE:.0%} CI over the pairs; train time as a ratio, the median over the pairs "
        "(one slow run cannot move it), with the pairs that hold a flagged run (below) named "
        "beside it. Memory measured as RSS is not compared."
    )


def flagged(limit: float, floor: float) -> str:
    return (
        f"Flagged runs: training time more than {limit:g} MADs (median absolute deviation, at "
        f"least {floor:.0%} of the median) from its arm's median, with the load it trained under:"
    )


def load(start: float, end: float, steal: float) -> str:
    """How busy the machine was while one run trained."""
    if not math.isfinite(start):
        return "load not recorded"
    stolen = f", {steal:.1f} s of CPU time stolen from its cores" if math.isfinite(steal) else ""
    return f"1-minute load average {start:.2f} at its start and {end:.2f} at its end{stolen}"


def table3(targets: str) -> str:
    return (
        "**Table 3.** Time to target (AlgoPerf-style, equal time): training seconds (cumulative "
        "`epoch_time_s`, evaluation excluded) until validation accuracy first reaches the model's "
        "target, median over the runs; a run that never reaches it counts as ∞ (shown as "
        "`∞ (miss)`), and so does an arm where at least half of the runs miss. `Reached`: runs "
        "that reached the target / runs (failed seeds-phase runs count as misses unless they "
        "reached it first). `× best`: time / the model's fastest arm. "
        f"Targets: {targets or 'none (no ' + BASELINE + ' runs)'}."
    )


def profile(plot: str, workloads: int, scores: str) -> str:
    return (
        f"Performance profile (`{plot}`): the share of the {workloads} workload(s) (model × "
        f"dataset) each method solves within τ × the best time, τ from 1 to {TAU_MAX:g}. Score "
        f"(area under the profile / {TAU_MAX - 1:g}; 1 = fastest on every workload, 0 = never "
        f"within {TAU_MAX:g}×): {scores}."
    )


def table4() -> str:
    return (
        f"**Table 4.** Accuracy at equal time: validation accuracy (%, mean ± {CONFIDENCE:.0%} CI) "
        f"after {BASELINE}'s median training time on the same model (the budget): a run's final "
        "val_acc if it finished within the budget, else that of its last epoch that ended within "
        "it. Validation, not test: test accuracy is only measured at the end of training. `n`: "
        "runs with an epoch within the budget."
    )


def verdict_intro(tested: int, alpha: float) -> str:
    return (
        f"Each method against {BASELINE} per model, at equal epochs (test accuracy after the full "
        f"budget) and at equal time (validation accuracy at {BASELINE}'s median training time, "
        "Table 4). Paired t-tests over the seeds (a pair = the same seed), Holm's correction across "
        f"all {tested} tested comparisons at α = {alpha:g}; effects in points with their "
        f"{CONFIDENCE:.0%} CI (t-interval, not adjusted). Fewer than 2 pairs: no test, the verdict "
        'is "matches" and the comparison is not in the Holm family. Differences equal on every '
        "seed (zero variance): p = 1 when all are 0, else p = 0."
    )


def pinning(pinned: int, unpinned: int, cores: str) -> str:
    if not pinned:
        return (
            "- CPU pinning: none of these runs was pinned to cores of its own (GPU runs, "
            "fractional CPU reservations or no record)."
        )
    rest = f"; {unpinned} not pinned (see each run's `pinning` tag)" if unpinned else ""
    return (
        f"- CPU pinning: {pinned} runs had cores of their own (cores {cores}): every thread of a "
        "run's process pinned to cores no other run of its node held while it ran, torch threads "
        f"= cores{rest}. Pinned runs side by side still share the node's memory bandwidth and "
        "last-level cache, so a run's time may rise with its neighbour's load."
    )


def machine_load(
    start: tuple[float, float], end: tuple[float, float], steal: tuple[float, float]
) -> str:
    """The range of the machine's load over the runs, as each recorded it while it trained."""
    if not math.isfinite(start[0]):
        return "- Machine load while training: not recorded."
    stolen = (
        f"; CPU time stolen by the hypervisor from a run's cores: {steal[0]:.1f}-{steal[1]:.1f} s"
        if math.isfinite(steal[0])
        else ""
    )
    return (
        f"- Machine load while training: 1-minute load average {start[0]:.2f}-{start[1]:.2f} at "
        f"the runs' start and {end[0]:.2f}-{end[1]:.2f} at their end{stolen}."
    )


def slot_use(slots: dict[str, SlotUse]) -> str:
    parts = [
        f"{phase} {100 * use.share:.0f}% ({use.train_s:.0f} s of training in "
        f"{use.slot_s:.0f} slot-seconds: {use.wall_s:.0f} s × {use.slots} slot(s), "
        f"{use.runs} runs)"
        for phase, use in slots.items()
        if math.isfinite(use.share)
    ]
    return (
        f"- Slot time spent training: {'; '.join(parts)}. Slot-seconds: a phase's wall time, from "
        "its first run's start to its last run's end (gaps between arms included), × the runs "
        "its nodes held at once; training: its runs' summed epoch times (early-stopped and failed "
        "runs included)."
    )


def conditions(phase: str, runs: int) -> str:
    return (
        f"Time and memory above come from the {phase} ({runs} runs), as those runs recorded them:"
    )
