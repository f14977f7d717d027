"""The report's Markdown: its tables, verdict lines and measurement conditions (captions: study.report.captions)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study import verdict
from study.report import captions
from study.report.frames import (
    ACC,
    COMPARED,
    EXACT_MEMORY,
    FAILED_STATUSES,
    MEM,
    RSS_MEMORY,
    TIME,
    ArmRuns,
    EqualTime,
    comparisons,
    exact_memory,
    final_metric,
    max_concurrent,
)
from study.report.plots import PROFILE_PLOT
from study.report.timing import LOAD_KEYS, MAD_FLOOR, MAD_LIMIT, SlotUse, flag_times
from study.spec import Report
from study.verdict import BASELINE, CONFIDENCE, mean_ci
from trainables.pinning import EXCLUSIVE


def render_markdown(
    experiment: str,
    trials: pd.DataFrame,
    arms: list[ArmRuns],
    equal: EqualTime,
    settings: Report,
    spent: dict[str, tuple[int, int]],
    slots: dict[str, SlotUse] | None = None,
) -> str:
    """The report: Tables 1-2 (equal epochs), 3-4 (equal time), the verdict lines and the
    measurement conditions (`slots`: each phase's slot use, timing.phase_slot_use)."""
    datasets = (
        ", ".join(sorted(trials["params.dataset"].dropna().unique()))
        if "params.dataset" in trials
        else "?"
    )
    search = trials[trials["phase"] != "seeds"]
    spent_text = ", ".join(
        f"{arm} {epochs} in {count}" for arm, (epochs, count) in sorted(spent.items())
    )
    lines = [
        f"# Study report: {experiment}",
        "",
        captions.table1(datasets),
    ]
    if not all(arm.from_seeds for arm in arms):
        lines.append(captions.SEEDS_FALLBACK)
    header = [
        "Model",
        "Method",
        "Train time (s)",
        "Test accuracy (%)",
        "Peak memory (MB)",
        "n",
        "failed",
    ]
    rows = [
        [
            arm.model,
            arm.method + ("" if arm.from_seeds else " †"),
            _num(arm.used[TIME].mean(), 1),
            _pm(*mean_ci(100 * arm.used[ACC])),
            _num(arm.used[MEM].mean(), 1) + ("" if exact_memory(arm.used) else " RSS"),
            str(len(arm.used)),
            str(len(arm.failed_runs)),
        ]
        for arm in arms
    ]
    lines += [
        "",
        *markdown_table(header, rows, right_from=2),
        "",
        f"Search phase: {len(search)} trials, {_count(search, 'tags.early_stopped', 'true')} stopped early "
        f"by the scheduler, {int(search['status'].isin(FAILED_STATUSES).sum())} failed."
        + (
            f" Search compute per arm (budget.search_epochs; trial-epochs in trials): {spent_text}."
            if spent
            else ""
        ),
        "",
        captions.table2(),
    ]
    timed = flag_times(pd.concat([arm.used for arm in arms], ignore_index=True), TIME)
    paired = paired_rows(arms, timed)
    header = [
        "Model",
        "Comparison",
        "Pairs",
        "Δ test accuracy (points)",
        "Time ratio",
        "Memory ratio",
    ]
    lines += (
        ["", *markdown_table(header, paired, right_from=2)]
        if paired
        else ["", captions.NO_PAIRS.format(baseline=BASELINE, compared=", ".join(COMPARED))]
    )
    lines += ["", *flagged_lines(timed)]
    lines += [
        "",
        *time_to_target_lines(equal),
        "",
        *equal_time_lines(equal),
        "",
        *verdict_lines(comparisons(equal), settings.alpha),
        "",
        *condition_lines(arms, slots or {}),
    ]
    return "\n".join(lines) + "\n"


def paired_rows(arms: list[ArmRuns], timed: pd.DataFrame) -> list[list[str]]:
    """Per model and compared method: mean ± CI of the per-pair accuracy difference and memory
    ratio; the median time ratio, with the pairs that hold a flagged run (`timed`: flag_times of the
    used runs)."""
    by_key = {(arm.model, arm.method): arm for arm in arms}
    flagged = timed[timed["flagged"]]
    rows = []
    for model in dict.fromkeys(arm.model for arm in arms):
        base = by_key.get((model, BASELINE))
        for method in COMPARED:
            other = by_key.get((model, method))
            if base is None or other is None:
                continue
            cols = ["pair", ACC, TIME, MEM]
            pairs = base.used[cols].merge(other.used[cols], on="pair", suffixes=("_base", "_other"))
            ratio = {key: pairs[f"{key}_other"] / pairs[f"{key}_base"] for key in (TIME, MEM)}
            odd = flagged[(flagged["model"] == model) & flagged["method"].isin([BASELINE, method])]
            odd_pairs = [p for p in pairs["pair"] if p in set(odd["pair"])]
            memory = (
                _pm(*mean_ci(ratio[MEM]))
                if exact_memory(base.used) and exact_memory(other.used)
                else "RSS: not compared"
            )
            rows.append(
                [
                    model,
                    f"{method} − {BASELINE}",
                    str(len(pairs)),
                    _pm(
                        *mean_ci(100 * (pairs[f"{ACC}_other"] - pairs[f"{ACC}_base"])), signed=True
                    ),
                    _num(ratio[TIME].median(), 2)
                    + (f" (flagged: {', '.join(odd_pairs)})" if odd_pairs else ""),
                    memory,
                ]
            )
    return rows


def time_to_target_lines(equal: EqualTime) -> list[str]:
    """Table 3: time-to-target per arm, the targets' origin and the performance-profile scores."""
    targets = "; ".join(
        f"{model} {100 * t.val_acc:.2f}% ({t.origin})" for model, t in sorted(equal.targets.items())
    )
    lines = [captions.table3(targets)]
    table = equal.time_to_target
    if table.empty:
        return [*lines, "", captions.NO_TARGET]
    header = ["Model", "Method", "Target (%)", "Reached", "Time to target (s)", "× best"]
    rows = [
        [
            r.model,
            r.method,
            f"{100 * r.target:.2f}",
            f"{r.reached}/{r.n}",
            _time(r.time_s),
            _ratio(r.ratio),
        ]
        for r in table.itertuples()
    ]
    workloads = table["model"].nunique()
    scores = ", ".join(
        f"{method} {verdict.profile_score(equal.profile[method]):.2f}" for method in equal.profile
    )
    return [
        *lines,
        "",
        *markdown_table(header, rows, right_from=2),
        "",
        captions.profile(PROFILE_PLOT, workloads, scores),
    ]


def equal_time_lines(equal: EqualTime) -> list[str]:
    """Table 4: validation accuracy per arm after the baseline's median training time."""
    runs = equal.runs[equal.runs["model"].isin(list(equal.budgets))]
    lines = [captions.table4()]
    if runs.empty:
        return [*lines, "", captions.NO_BUDGET]
    header = ["Model", "Method", "Budget (s)", "Val accuracy at budget (%)", "n"]
    rows = [
        [
            model,
            method,
            _num(equal.budgets[model], 1),
            _pm(*mean_ci(100 * arm["acc_at_time"])),
            str(int(arm["acc_at_time"].notna().sum())),
        ]
        for (model, method), arm in runs.groupby(["model", "method"], sort=False)
    ]
    return [*lines, "", *markdown_table(header, rows, right_from=2)]


def verdict_lines(found: list[verdict.Comparison], alpha: float) -> list[str]:
    """One `Verdict` line per model and comparison, after a paragraph that says how they were decided."""
    lines = [
        "## Verdict",
        "",
        captions.verdict_intro(sum(math.isfinite(c.test.p) for c in found), alpha),
    ]
    for c in found:
        t = c.test
        ci = (
            "n/a"
            if not math.isfinite(t.ci_low)
            else f"[{100 * t.ci_low:+.2f}, {100 * t.ci_high:+.2f}]"
        )
        p = (
            "no test"
            if not math.isfinite(t.p)
            else f"p = {t.p:.3g}, Holm-adjusted p = {c.p_holm:.3g}"
        )
        effect = "n/a" if not math.isfinite(t.mean) else f"{100 * t.mean:+.2f} points"
        lines += [
            "",
            f"Verdict {c.model}, {c.method} vs {BASELINE}, {c.budget}: {c.verdict(alpha)}; effect {effect} "
            f"{c.quantity} ({CONFIDENCE:.0%} CI {ci}; {t.n} pair{'s' if t.n != 1 else ''}; {p}).",
        ]
    if not found:
        lines += ["", captions.NOTHING_TO_COMPARE]
    return lines


def flagged_lines(timed: pd.DataFrame) -> list[str]:
    """The runs whose training time is more than MAD_LIMIT MADs from their arm's median, with the
    load they trained under."""
    flagged = timed[timed["flagged"]]
    if flagged.empty:
        return [captions.NOTHING_FLAGGED.format(limit=MAD_LIMIT)]
    lines = [captions.flagged(MAD_LIMIT, MAD_FLOOR)]
    for run in flagged.to_dict("records"):
        load = [run.get(final_metric(key), math.nan) for key in LOAD_KEYS]
        lines.append(
            f"- {run['model']}/{run['method']} pair {run['pair']}: {_num(run[TIME], 1)} s, "
            f"arm median {_num(run['median'], 1)} s ({run['mads']:+.1f} MADs); "
            f"{captions.load(*load)}."
        )
    return lines


def condition_lines(arms: list[ArmRuns], slots: dict[str, SlotUse]) -> list[str]:
    """Under which conditions the reported time and memory were measured, from the runs' own records."""
    runs = pd.concat([arm.used for arm in arms], ignore_index=True)
    phase = "seeds phase" if all(arm.from_seeds for arm in arms) else "runs shown in Table 1"
    lines = [
        "## Measurement conditions",
        "",
        captions.conditions(phase, len(runs)),
        "",
    ]
    if runs.empty:
        return lines[:-2]
    memory = {**EXACT_MEMORY, **RSS_MEMORY}
    sources = _values(runs, "tags.mem_source")
    lines += [
        f"- Device: {', '.join(_values(runs, 'tags.device')) or 'not recorded'}.",
        f"- Per trial: {_listing(runs, final_metric('trial_cpus'))} CPU(s) and "
        f"{_listing(runs, final_metric('trial_gpus'))} GPU(s) reserved, "
        f"{_listing(runs, final_metric('torch_threads'))} torch thread(s).",
        f"- Concurrency: at most {max_concurrent(runs)} of these runs trained at once on one node "
        "(overlap of the runs' start and end times, per Ray node).",
        captions.pinning(*_pinned(runs)),
        captions.TRAINING_TIME,
        captions.machine_load(*(_range(runs, final_metric(key)) for key in LOAD_KEYS)),
        f"- Peak memory: {'; '.join(memory.get(s, s) for s in sources) or 'process RSS (source not recorded)'}; "
        "above the memory in use once the data set is loaded.",
        f"- Dates (UTC): {', '.join(sorted(runs['start_time'].dt.strftime('%Y-%m-%d').dropna().unique()))}.",
    ]
    if slots:
        lines.append(captions.slot_use(slots))
    return lines


def _pinned(runs: pd.DataFrame) -> tuple[int, int, str]:
    """(runs pinned to cores of their own, runs not pinned or not recorded, the cores used)."""
    mode = runs["tags.pinning"] if "tags.pinning" in runs else pd.Series(None, runs.index)
    cores = _values(runs[mode == EXCLUSIVE], "tags.cpu_cores")
    pinned = int((mode == EXCLUSIVE).sum())
    return pinned, len(runs) - pinned, "; ".join(cores)


def _range(runs: pd.DataFrame, column: str) -> tuple[float, float]:
    """(min, max) of a numeric column's finite values; (NaN, NaN) without any."""
    values = pd.to_numeric(runs[column] if column in runs else pd.Series(dtype=float))
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan)


def _values(runs: pd.DataFrame, column: str) -> list[str]:
    return sorted(runs[column].dropna().astype(str).unique()) if column in runs else []


def _listing(runs: pd.DataFrame, column: str) -> str:
    values = runs[column].dropna().unique() if column in runs else []
    return " or ".join(f"{v:g}" for v in sorted(values)) or "?"


def markdown_table(header: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    """A GitHub Markdown table; columns from index `right_from` on are right-aligned (numbers)."""
    align = ["---" if i < right_from else "--:" for i in range(len(header))]
    return ["| " + " | ".join(cells) + " |" for cells in (header, align, *rows)]


def _count(frame: pd.DataFrame, column: str, value: str) -> int:
    return int((frame[column] == value).sum()) if column in frame else 0


def _time(value: float) -> str:
    return "∞ (miss)" if value == math.inf else _num(value, 1)


def _ratio(value: float) -> str:
    return "∞" if value == math.inf else _num(value, 2)


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _pm(mean: float, half: float | None, signed: bool = False) -> str:
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return f"{text} ± {'n/a' if half is None else f'{half:.2f}'}"
