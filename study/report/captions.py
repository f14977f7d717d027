"""The report's prose in one place: every table's caption and the paragraphs that say how numbers
were made. Functions take the few values a caption quotes; the tables module fills in the rest."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from study import across_workloads
from study.verdict import BASELINE, CONFIDENCE, MIN_STUDIES, POWER, TAU_MAX, sd_interval

if TYPE_CHECKING:
    from study.report.timing import SlotUse

SEEDS_FALLBACK = (
    "† no seeds-phase runs for this arm: the best search-phase trial by validation accuracy "
    "is shown instead (n = 1, no CI; no test accuracy, which search trials never measure)."
)
NOTHING_FLAGGED = "No run's training time is more than {limit:g} MADs from its arm's median."
NO_PAIRS = "No model has both {baseline} and one of {compared}."
NO_EQUAL_TIME = (
    "No equal-time phase in this study (`budget.equal_time = false`, or no finished "
    f"{BASELINE} seeds run to set the budget T)."
)
NOTHING_TO_COMPARE = f"No model has both {BASELINE} and another method: nothing to compare."
FALSE_POSITIVE = (
    "For a control arm this is a false positive of the control: the same method against itself. "
    "Under no difference it comes out beats or loses at rate α by design; more often it means "
    "tuning luck: the two arms' searches chose different configs (Table 1b), and a method "
    "comparison on this budget cannot resolve differences smaller than this one "
    "(budget.studies > 1 measures that luck; docs/phases.md)."
)
FAMILY = {
    "control": (
        "A control arm trains the same method again under its own label, searched and seeded as "
        "its own arm (its own sampler seed and seed numbers); against its method's arm it should "
        "come out equivalent or inconclusive."
    ),
}
TRAINING_TIME = (
    "- Training time: the sum of `epoch_time_s`, the training loop only (evaluation, checkpoints "
    "and start-up excluded), with CUDA synchronised at both ends."
)


def summary() -> str:
    return (
        "Across workloads (model × data set), per method against "
        f"{BASELINE}: P(method > {BASELINE}), the probability that a seeds-phase run of the method "
        f"has a higher test accuracy than one of {BASELINE} (every pair of runs within a workload, "
        "ties counting 1/2, averaged over workloads: rliable's probability of improvement), and "
        "the interquartile mean (IQM, the mean of the middle 50%) of the paired test-accuracy "
        f"differences, in points. {CONFIDENCE:.0%} CIs: stratified percentile bootstrap "
        f"({across_workloads.RESAMPLES} resamples; runs resampled within each workload and arm; "
        "n/a when a workload has fewer than 2 runs of an arm). A diverged run counts with chance "
        "accuracy."
    )


def table1(datasets: str) -> str:
    return (
        f"**Table 1.** Test accuracy (%, mean ± {CONFIDENCE:.0%} CI over seeds, t-distribution), "
        "total training time (s, mean) and peak memory (MB, mean; `RSS`: process high-water mark, "
        f"not exact) per model and training method on {datasets}. `n`: runs in the statistics; "
        "`failed`: runs of the same phase that did not finish. A run that diverged (its loss "
        'stopped being finite) is an outcome: "1 of 5 diverged" means one of the `n` runs, '
        "counted with chance accuracy (1 / classes; no time or memory). Any other failure is the "
        "infrastructure's: retried (budget.max_failures), and excluded if it still failed."
    )


def table1b(tolerance: float) -> str:
    return (
        "**Table 1b.** What each arm trained, from the same runs as Table 1: the knobs its search "
        "chose (`variant`: sequential greedy, decoupled = DGL, or auto_depth; `epochs_per_block`: "
        "greedy's stage weights; a teacher_grad near 1 means end-to-end training plus an "
        "auxiliary loss), its whole epochs per stage, and the training FLOPs of a run in "
        "standard epochs (torch FlopCounterMode: convolutions and matmuls, forward and backward; "
        "one standard epoch = one epoch of standard training of the same model and data), mean "
        f"over the runs. `Within {tolerance:.0%} of budget`: the runs whose FLOPs are within "
        f"{tolerance:.0%} of the "
        "budget `epochs` (budget.unit = flops; an auto_depth run that stops early uses less). "
        "`Device-seconds`: training seconds times the devices a run held, mean. `Search "
        "compute`: what the arm's search spent in the budget's unit, and its trial count."
    )


def search_spend(per_arm: str, spread: float, trial: float) -> str:
    ok = "within" if spread <= trial else "NOT within"
    return (
        f"Search compute per arm (budget.search_epochs, in the budget's unit, in trials): "
        f"{per_arm}; the arms differ by {spread:.2f}, {ok} one trial's cost ({trial:.2f})."
    )


def table2() -> str:
    return (
        f"**Table 2.** Paired differences against {BASELINE} training per model (a control arm: "
        "against its method's arm; runs paired by seed index, within a study when there are "
        "several): test accuracy in points and peak memory as a ratio (method / "
        f"{BASELINE}), mean ± {CONFIDENCE:.0%} CI over the pairs; train time as a ratio, the "
        "median over the pairs (one slow run cannot move it), with the pairs that hold a flagged "
        "run (below) named beside it. Memory measured as RSS is not compared."
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
        "**Table 3.** Time to target (AlgoPerf-style), measured in the equal-time phase: training "
        "seconds (cumulative `epoch_time_s`, evaluation excluded) until validation accuracy first "
        f"reaches the model's target, median over the runs ({BASELINE}: its seeds runs, whose "
        "median time is the budget T). Censored at T: a run that reaches the target only after "
        "T, or never, counts as ∞ (shown as `∞ (miss)`), the same rule for every arm, and so "
        "does an arm where at least half of the runs miss. `Reached`: runs that reached the "
        "target within T / runs (failed equal-time runs count as misses unless they reached it "
        "first). `× best`: time / the model's fastest arm. The target was fixed before the phase "
        f"started. Targets: {targets or 'none (no equal-time phase)'}."
    )


def target_too_high(model: str, reached: int, runs: int) -> str:
    return (
        f"Warning: {BASELINE} reached the {model} target in only {reached} of its {runs} runs. "
        "The default target is a best-of-trials value, biased upward: widen "
        "`report.target_tolerance` in the spec (and say why there)."
    )


def profile(plot: str, workloads: int, scores: str) -> str:
    return (
        f"Performance profile (`{plot}`): the share of the {workloads} workload(s) (model × "
        f"dataset) each method solves within τ × the best time, τ from 1 to {TAU_MAX:g}. Score "
        f"(area under the profile / {TAU_MAX - 1:g}; 1 = fastest on every workload, 0 = never "
        f"within {TAU_MAX:g}×): {scores}."
    )


def table4(plot: str) -> str:
    return (
        f"**Table 4.** Equal time: test accuracy (%, mean ± {CONFIDENCE:.0%} CI) of each compared "
        "arm's best config rerun over the same seeds with its budget set so that its training "
        f"takes about T ({BASELINE}'s median training time in the seeds phase; {BASELINE}'s row: "
        "those seeds runs). Budget = the spec's epochs × T / the arm's median seeds-phase "
        "training time, so every schedule runs to its end (AlgoPerf's rule: schedules are not "
        "cut). `Epochs`: the runs' budget (`epochs`, in the budget's unit: standard epochs of "
        "FLOPs unless `budget.unit = epochs`); `Train time`: their median training time "
        f"(s), each run's against T in `{plot}`; `failed`: failed equal-time runs, excluded."
    )


def verdict_intro(sizes: dict[str, int], alpha: float, margin: float, studies: int) -> str:
    families = "; ".join(f"{name} ({m} tested)" for name, m in sizes.items())
    low, high = sd_interval(1.0, 3)
    if studies >= MIN_STUDIES:
        pairs = (
            f"Pairs are (study, seed) over {studies} independent searches per arm; pairs within a "
            "study share its tuned config, so the test is over the studies' means."
        )
    elif studies > 1:
        pairs = (
            f"Pairs are (study, seed) over {studies} independent searches per arm, fewer than "
            f"{MIN_STUDIES}: the test is over seeds only."
        )
    else:
        pairs = (
            "A pair is the same seed index in both arms, after one search per arm: the test is "
            "over seeds only (it covers seed luck, not tuning luck)."
        )
    return (
        f"Each question is its own Holm family, corrected within and never across: {families}. "
        f"Within a family, at α = {alpha:g} and a margin of ±{margin:g} points (report.margin): "
        "**beats** / **loses** when the Holm-adjusted two-sided paired t-test is significant "
        f"(the {CONFIDENCE:.0%} CI printed first is its t-interval, not adjusted); "
        "**equivalent** when the Holm-adjusted p of two one-sided tests against ±margin (p_TOST, "
        f"the larger of the two) is below α (the {1 - 2 * alpha:.0%} CI printed second lies "
        "inside the margin exactly when the unadjusted p_TOST is below α); both: "
        '"beats (by less than the margin)"; otherwise **inconclusive**, with the seeds that '
        f"would settle it: the fewest pairs for power {POWER:g} at α/m (m: the family's tested "
        "comparisons; conservative for Holm), from the noncentral t with the observed SD of the "
        "paired differences, to detect a true difference of the margin (two-sided test) or to "
        "show equivalence when the true difference is 0 (both one-sided tests, each at α/m). An "
        f"SD from 3 pairs is rough: its {CONFIDENCE:.0%} CI runs from {low:.2f}× to {high:.1f}× "
        f"the estimate. {pairs} A diverged run counts with chance "
        "accuracy. Fewer than 2 pairs: no test, not in the family. Differences equal on every "
        "pair (zero variance): p = 1 when all are 0, else p = 0; p_TOST = 0 when that common "
        "difference is inside the margin, else 1."
    )


def search_progress(plots: str) -> str:
    return (
        f"Tunability ({plots}, one per model): per arm, the best final validation accuracy so far "
        "of the search trials that ran to the end (what the search picks by) against the search "
        "compute spent (trials in the order they ended, those stopped early included). It shows "
        "how fast each method's search finds its best."
    )


def table5(studies: int) -> str:
    return (
        f"**Table 5.** The {studies} studies (`budget.studies`): each an independent search per "
        "arm, with its own sampler seed, best config and seeds. Mean seeds-phase test accuracy "
        "(%) per study and the spread between the studies (max − min, points): tuning luck, "
        "on top of the seed luck that Table 1's CI shows."
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


# --- "at which settings" (study.report.settings_text) -------------------------------------------
SETTINGS_HEADING = "## At which settings: what the searches say"
NO_SEARCHES = (
    "No Optuna studies in `{file}`: the searches were not stored (a sweep writes one per arm)."
)


def settings_table(reliable: int, quantile: float, min_top: int, flat: float) -> str:
    return (
        "**Table S1.** Which searched knobs matter, per arm: fANOVA importance (Optuna's "
        "`FanovaImportanceEvaluator`: the share of the variance of the final validation accuracy "
        "over the arm's complete search trials that the knob explains on its own, over the knobs "
        "that every complete trial has) and PED-ANOVA (Optuna's default evaluator: how much the "
        f"knob's values among the top {quantile:.0%} of trials differ from all trials, conditional "
        f"knobs included; computed where that top holds at least {min_top} trials). Each sums to 1 "
        "per arm; `—`: not computed. Trials stopped early have no final value and are left out. "
        "`<list>[0]`: the first stage's share of the epochs, the per-stage list a trial trained "
        "with (its internal weights are not knobs: only their ratios matter). `Trials`: complete "
        f"trials / search trials; ⚠ under {reliable} complete trials the ranking is unreliable. "
        f"Below, a knob is *flat* when its fANOVA importance is under {flat:g}."
    )


def settings_figures(pairs: str) -> str:
    return (
        "Figures per arm: `importance_<arm>.png` (the table's bars), `knobs_<arm>.png` (final "
        "validation accuracy against lr and each of the method's own knobs, every knob for "
        "standard; one point per search trial: filled, complete; hollow, stopped early, at its "
        "last validation accuracy; star, the chosen config)"
        + (
            f", and {pairs}: two knobs against each other, colour: final validation accuracy"
            if pairs
            else ""
        )
        + "."
    )


def trials_note(complete: int, total: int, stopped: int, reliable: int) -> str:
    note = f"{complete} complete of {total} trials"
    if stopped:
        note += f", {stopped} stopped early"
    return note + (f" ⚠ under {reliable} complete: unreliable" if complete < reliable else "")


def search_counts(arm: str, total: int, complete: int, stopped: int, failed: int) -> str:
    parts = [f"{complete} complete"]
    parts += [f"{stopped} stopped early"] if stopped else []
    parts += [f"{failed} failed"] if failed else []
    return f"{arm} ({total} search trials: {', '.join(parts)}):"


def too_few_to_rank(complete: int) -> str:
    return f"with {_trials(complete, 'complete')} no knob can be ranked."


def nothing_varies(complete: int, value: float) -> str:
    return (
        f"all {complete} complete trials reached {100 * value:.2f}% validation accuracy: "
        "no knob can be ranked."
    )


def leaders(knobs: list[str], values: list[float]) -> str:
    shares = ", ".join(f"{v:.2f}" for v in values)
    names = " and ".join([", ".join(knobs[:-1]), knobs[-1]] if len(knobs) > 1 else knobs)
    verb = "explains" if len(knobs) == 1 else "explain"
    return f"{names} {verb} most of the variance (fANOVA {shares})"


def no_leader(knobs: list[str], total: float) -> str:
    return f"no knob stands out (the top {len(knobs)}, {', '.join(knobs)}, share {total:.2f})"


def trend(knob: str, rho: float, threshold: float) -> str:
    if abs(rho) < threshold:
        return f"accuracy has no monotone trend in {knob} (Spearman ρ = {rho:+.2f})"
    return f"accuracy {'rises' if rho > 0 else 'falls'} with {knob} (Spearman ρ = {rho:+.2f})"


def best_region(knob: str, low: float, high: float, count: int, chosen: float) -> str:
    where = f"{knob} = {low:.3g}" if low == high else f"{knob} in [{low:.3g}, {high:.3g}]"
    return f"the best {_trials(count, 'complete')} have {where} (chosen: {chosen:.3g})"


def best_choice(knob: str, means: dict[str, float]) -> str:
    ranked = sorted(means.items(), key=lambda item: -item[1])
    others = ", ".join(f"{100 * mean:.1f}% ({choice})" for choice, mean in ranked[1:])
    top, mean = ranked[0]
    return f"{knob} = {top} averages {100 * mean:.1f}%" + (f" against {others}" if others else "")


def flat(knobs: list[str]) -> str:
    return f"accuracy is flat in {', '.join(knobs)}"


def unvaried(knobs: list[str]) -> str:
    return f"{', '.join(knobs)} took one value in the complete trials"


def ped_differs(knob: str, quantile: float) -> str:
    return f"PED-ANOVA (what the top {quantile:.0%} share) puts {knob} first"


def few_trials(complete: int, reliable: int) -> str:
    return f"with {complete} complete trials (under {reliable}) this is a hint, not a ranking"


def stopped_apart(stopped: int) -> str:
    return (
        f"{_trials(stopped)} stopped early, not in the importance, {_verb(stopped)} drawn apart "
        "(hollow), at the last validation accuracy reached"
    )


def _trials(count: int, kind: str = "") -> str:
    """`1 trial`, `3 complete trials`."""
    return f"{count} {kind + ' ' if kind else ''}trial{'' if count == 1 else 's'}"


def _verb(count: int) -> str:
    return "is" if count == 1 else "are"
