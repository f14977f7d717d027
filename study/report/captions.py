"""The report's prose in one place: every table's caption and the paragraphs that say how numbers
were made. Functions take the few values a caption quotes; the tables module fills in the rest."""

from __future__ import annotations

from study.verdict import BASELINE, CONFIDENCE, TAU_MAX

SEEDS_FALLBACK = (
    "† no seeds-phase runs for this arm: the best search-phase trial by validation accuracy "
    "is shown instead (n = 1, no CI)."
)
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
        f"**Table 2.** Paired differences against {BASELINE} training per model (runs paired by "
        f"seed): test accuracy in points, train time and peak memory as ratios (method / "
        f"{BASELINE}); mean ± {CONFIDENCE:.0%} CI over the pairs. Memory measured as RSS is not "
        "compared."
    )


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


def conditions(phase: str, runs: int) -> str:
    return (
        f"Time and memory above come from the {phase} ({runs} runs), as those runs recorded them:"
    )
