"""The report's prose in one place: every table's caption and the paragraphs that say how numbers
were made. Functions take the few values a caption quotes; the tables module fills in the rest."""

from __future__ import annotations

from study.verdict import BASELINE, CONFIDENCE, TAU_MAX

SEEDS_FALLBACK = (
    "† no seeds-phase runs for this arm: the best search-phase trial by validation accuracy "
    "is shown instead (n = 1, no CI)."
)
NO_PAIRS = "No model has both {baseline} and one of {compared}."
NO_EQUAL_TIME = (
    "No equal-time phase in this study (`budget.equal_time = false`, or no finished "
    f"{BASELINE} seeds run to set the budget T)."
)
NOTHING_TO_COMPARE = f"No model has both {BASELINE} and another method: nothing to compare."
CONTROL_FALSE_POSITIVE = (
    " (a false positive of the control: it compares a method with itself, and comes out "
    "beats/loses at rate α by design)"
)
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
        f"**Table 2.** Paired differences against {BASELINE} training per model (a control arm: "
        "against its method's arm; runs paired by seed index, within a study when there are "
        "several): test accuracy in points, train time and peak memory as ratios (method / "
        f"{BASELINE}); mean ± {CONFIDENCE:.0%} CI over the pairs. Memory measured as RSS is not "
        "compared."
    )


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
        "cut). `Epochs`: the epochs the runs trained; `Train time`: their median training time "
        f"(s), each run's against T in `{plot}`; `failed`: failed equal-time runs, excluded."
    )


def table5(studies: int) -> str:
    return (
        f"**Table 5.** The {studies} studies (`budget.studies`): each an independent search per "
        "arm, with its own sampler seed, best config and seeds. Mean seeds-phase test accuracy "
        "(%) per study and the spread between the studies (max − min, points): tuning luck, "
        "on top of the seed luck that Table 1's CI shows."
    )


def verdict_intro(tested: dict[str, int], alpha: float) -> str:
    families = "; ".join(f"{family}: {count} tested" for family, count in tested.items())
    return (
        "Three questions, each its own family, Holm's correction within a family and never "
        f"across ({families or 'none'}) at α = {alpha:g}. Equal epochs: each method against "
        f"{BASELINE} per model, test accuracy after the full budget (seeds phase). Equal time: "
        f"each method's equal-time runs (Table 4) against {BASELINE}'s seeds runs. Control: each "
        "control arm against its method's arm (seeds phase). Paired t-tests (a pair = the same "
        "seed index, within a study); effects in points with their "
        f"{CONFIDENCE:.0%} CI (t-interval, not adjusted). Fewer than 2 pairs: no test, the verdict "
        'is "matches" and the comparison is not in its family. Differences equal on every '
        "seed (zero variance): p = 1 when all are 0, else p = 0."
    )


def conditions(phase: str, runs: int) -> str:
    return (
        f"Time and memory above come from the {phase} ({runs} runs), as those runs recorded them:"
    )
