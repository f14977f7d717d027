"""The report's summary and verdict sections: one line per method across workloads, then per
Holm family one `Verdict` line per comparison (their prose in study.report.captions)."""

from __future__ import annotations

import math

from study import across_workloads, verdict
from study.report import captions
from study.verdict import BASELINE, CONFIDENCE


def summary_lines(summaries: list[across_workloads.MethodSummary]) -> list[str]:
    """The summary: one line per method against standard across workloads."""
    lines = ["## Summary", "", captions.summary()]
    for s in summaries:
        lines += [
            "",
            f"- {s.method} vs {BASELINE} over {s.workloads} workload"
            f"{'s' if s.workloads != 1 else ''}: P({s.method} > {BASELINE}) = "
            f"{s.improvement.value:.2f} ({CONFIDENCE:.0%} CI {_interval(s.improvement, '.2f')}); "
            f"IQM of the test-accuracy difference {s.iqm.value:+.2f} points "
            f"({CONFIDENCE:.0%} CI {_interval(s.iqm, '+.2f')}).",
        ]
    if not summaries:
        lines += ["", captions.NOTHING_TO_COMPARE]
    return lines


def verdict_lines(found: list[verdict.Family], alpha: float, margin: float) -> list[str]:
    """The verdict: how it is decided, then per Holm family one `Verdict` line per comparison."""
    decided = {family.name: verdict.decide(family, alpha, margin) for family in found}
    comparisons = [c for family in found for c in family.comparisons]
    studies = max((c.studies for c in comparisons), default=1)
    sizes = {name: verdicts[0].tested if verdicts else 0 for name, verdicts in decided.items()}
    lines = ["## Verdict", "", captions.verdict_intro(sizes, alpha, margin, studies)]
    for name, verdicts in decided.items():
        lines += ["", f"### {name.capitalize()} (Holm family, m = {sizes[name]} tested)"]
        lines += ["", captions.FAMILY[name]] if name in captions.FAMILY else []
        lines += [line for v in verdicts for line in ("", verdict_line(v))]
    if not found:
        lines += ["", captions.NOTHING_TO_COMPARE]
    return lines


def verdict_line(v: verdict.Verdict) -> str:
    """One comparison's verdict: outcome, margin, effect with both CIs and p-values, the pairs, and
    when inconclusive the seeds that would settle it."""
    c, t = v.comparison, v.comparison.test
    level = 1 - 2 * v.alpha
    if math.isfinite(t.p):
        tests = (
            f"{CONFIDENCE:.0%} CI {_ci(t.ci_low, t.ci_high)}, p = {t.p:.3g}, Holm-adjusted "
            f"p = {v.p_holm:.3g}; {level:.0%} CI {_ci(*v.equivalence_ci)}, p_TOST = "
            f"{v.p_tost:.3g}, Holm-adjusted p_TOST = {v.p_tost_holm:.3g}"
        )
    else:
        tests = "no test with fewer than 2 pairs"
    effect = "n/a" if not math.isfinite(t.mean) else f"{t.mean:+.2f} points"
    text = (
        f"Verdict {c.model}, {c.method} vs {c.baseline}, {v.family}: {v.outcome}; margin "
        f"±{v.margin:.2f} points; effect {effect} {c.quantity} ({tests}; {_units(c)})."
    )
    if v.outcome == "inconclusive":
        text += " " + seeds_needed_text(v)
    elif v.differs and verdict.is_control(c.method):
        text += " " + captions.FALSE_POSITIVE
    return text


def seeds_needed_text(v: verdict.Verdict) -> str:
    """What would settle an inconclusive verdict: pairs for power 0.8 from the observed SD."""
    unit = "studies" if v.comparison.over_studies else "seeds"
    needed = v.seeds_needed()
    t = v.comparison.test
    if needed is None:
        return f"{unit.capitalize()} needed: unknown without an SD (fewer than 2 pairs)."
    low, high = verdict.sd_interval(t.sd, t.n)
    return (
        f"{unit.capitalize()} needed for power {verdict.POWER:g} at α/m = {needed.level:.3g}, "
        f"from the observed SD of the paired differences, {t.sd:.2f} points "
        f"(from {t.n} {'study means' if v.comparison.over_studies else 'pairs'}; the SD's "
        f"{CONFIDENCE:.0%} CI [{low:.2f}, {high:.2f}]): "
        f"{_needed(needed.difference)} to detect a difference of {v.margin:.2f} points "
        f"(two-sided), {_needed(needed.equivalence)} to show equivalence within "
        f"±{v.margin:.2f} points (both one-sided tests)."
    )


def _units(c: verdict.Comparison) -> str:
    n = c.test.n
    if c.over_studies:
        return f"{n} study means: {c.studies} studies, the test is over the studies' means"
    pairs = f"{n} pair{'s' if n != 1 else ''}"
    return pairs + (
        f" from {c.studies} studies: the test is over seeds only" if c.studies > 1 else ""
    )


def _needed(count: int | None) -> str:
    return f"more than {verdict.MAX_PAIRS}" if count is None else str(count)


def _interval(e: across_workloads.Estimate, spec: str) -> str:
    return "n/a" if not math.isfinite(e.ci_low) else f"[{e.ci_low:{spec}}, {e.ci_high:{spec}}]"


def _ci(low: float, high: float) -> str:
    return "n/a" if not math.isfinite(low) else f"[{low:+.2f}, {high:+.2f}]"
