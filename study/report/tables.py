"""The report's Markdown: its tables, the summary and verdict (study.report.verdict_text) and the
measurement conditions (captions: study.report.captions)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from study import across_workloads, verdict
from study.markdown import markdown_table
from study.phases import EQUAL_TIME
from study.report import captions
from study.report.frames import (
    ACC,
    COMPARED,
    COMPUTE_TOLERANCE,
    EXACT_MEMORY,
    FAILED_STATUSES,
    MEM,
    RSS_MEMORY,
    TIME,
    ArmRuns,
    EqualTime,
    SearchSpend,
    exact_memory,
    families,
    final_metric,
    max_concurrent,
    seeds_points,
    trained,
)
from study.report.plots import EQUAL_TIME_PLOT, PROFILE_PLOT, PROGRESS_PLOT
from study.report.timing import LOAD_KEYS, MAD_FLOOR, MAD_LIMIT, SlotUse, flag_times
from study.report.verdict_text import summary_lines, verdict_lines
from study.spec import Report, method_of
from study.verdict import BASELINE, is_control, mean_ci
from trainables.pinning import EXCLUSIVE


def render_markdown(
    experiment: str,
    trials: pd.DataFrame,
    arms: list[ArmRuns],
    equal: EqualTime,
    settings: Report,
    spent: dict[str, SearchSpend],
    slots: dict[str, SlotUse] | None = None,
) -> str:
    """The report: Tables 1-2 (equal compute), 3-4 (equal time), 5 (studies, when several), the
    verdict lines and the measurement conditions (`slots`: each phase's slot use,
    timing.phase_slot_use)."""
    datasets = (
        ", ".join(sorted(trials["params.dataset"].dropna().unique()))
        if "params.dataset" in trials
        else "?"
    )
    search = trials[trials["phase"] == "search"]
    lines = [
        f"# Study report: {experiment}",
        "",
        *summary_lines(across_workloads.summarize(seeds_points(arms), "points")),
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
            failed_cell(arm),
        ]
        for arm in arms
    ]
    lines += [
        "",
        *markdown_table(header, rows, right_from=2),
        "",
        *trained_lines(arms, spent),
        "",
        f"Search phase: {len(search)} trials, {_count(search, 'tags.early_stopped', 'true')} "
        "stopped early "
        f"by the scheduler, {int(search['status'].isin(FAILED_STATUSES).sum())} failed."
        + search_spend_text(spent),
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
        *studies_lines(arms),
        *verdict_lines(families(arms, trials), settings.alpha, settings.margin),
        "",
        *progress_lines(trials),
        "",
        *condition_lines(arms, equal, slots or {}),
    ]
    return "\n".join(lines) + "\n"


def trained_lines(arms: list[ArmRuns], spent: dict[str, SearchSpend]) -> list[str]:
    """Table 1b: what each arm trained (its chosen knobs, epochs per stage, compute against the
    budget, device-seconds) and what its search spent."""
    header = [
        "Model",
        "Method",
        "Chosen knobs",
        "Epochs per stage",
        "Compute (standard epochs)",
        f"Within {COMPUTE_TOLERANCE:.0%} of budget",
        "Device-seconds",
        "Search compute (trials)",
    ]
    rows = []
    for arm in arms:
        t, search = trained(arm), spent.get(f"{arm.model}/{arm.method}")
        knobs = ", ".join(f"{k}={_short(v)}" for k, v in t.knobs.items()) or "—"
        within = (
            f"{t.within}/{len(arm.used)} (budget {t.budget:g})"
            if t.unit == "flops"
            else f"unit: epochs ({t.budget:g})"
        )
        rows.append(
            [
                arm.model,
                arm.method,
                knobs,
                t.stage_epochs,
                _num(t.compute, 2),
                within,
                _num(t.device_s, 1),
                f"{search.compute:.2f} ({search.trials})" if search else "n/a",
            ]
        )
    return [captions.table1b(COMPUTE_TOLERANCE), "", *markdown_table(header, rows, right_from=3)]


def search_spend_text(spent: dict[str, SearchSpend]) -> str:
    """Every arm's search compute, and whether they ended within one trial's cost of each other."""
    if not spent:
        return ""
    computes = [s.compute for s in spent.values()]
    spread, trial = max(computes) - min(computes), max(s.largest_trial for s in spent.values())
    return " " + captions.search_spend(
        ", ".join(f"{arm} {s.compute:.2f} in {s.trials}" for arm, s in sorted(spent.items())),
        spread,
        trial,
    )


def paired_rows(arms: list[ArmRuns], timed: pd.DataFrame) -> list[list[str]]:
    """Per model and arm other than standard (a control arm: against its method's arm): mean ± CI
    of the per-pair accuracy difference and memory ratio; the median time ratio, with the pairs
    that hold a flagged run (`timed`: flag_times of the used runs)."""
    by_key = {(arm.model, arm.method): arm for arm in arms}
    flagged = timed[timed["flagged"]]
    rows = []
    for other in arms:
        model, method = other.model, other.method
        base = by_key.get((model, method_of(method) if is_control(method) else BASELINE))
        if method == BASELINE or base is None:
            continue
        cols = ["pair", ACC, TIME, MEM]
        pairs = base.used[cols].merge(other.used[cols], on="pair", suffixes=("_base", "_other"))
        ratio = {key: pairs[f"{key}_other"] / pairs[f"{key}_base"] for key in (TIME, MEM)}
        odd = flagged[(flagged["model"] == model) & flagged["method"].isin([base.method, method])]
        odd_pairs = [p for p in pairs["pair"] if p in set(odd["pair"])]
        memory = (
            _pm(*mean_ci(ratio[MEM]))
            if exact_memory(base.used) and exact_memory(other.used)
            else "RSS: not compared"
        )
        rows.append(
            [
                model,
                f"{method} − {base.method}",
                str(len(pairs)),
                _pm(*mean_ci(100 * (pairs[f"{ACC}_other"] - pairs[f"{ACC}_base"])), signed=True),
                _num(ratio[TIME].median(), 2)
                + (f" (flagged: {', '.join(odd_pairs)})" if odd_pairs else ""),
                memory,
            ]
        )
    return rows


def time_to_target_lines(equal: EqualTime) -> list[str]:
    """Table 3: time-to-target per arm in the equal-time phase, censored at T, the targets' origin,
    a warning when standard reaches its own target in under half its runs, and the profile."""
    targets = "; ".join(
        f"{model} {100 * t.val_acc:.2f}% ({t.origin})" for model, t in sorted(equal.targets.items())
    )
    lines = [captions.table3(targets)]
    table = equal.time_to_target
    if table.empty:
        return [*lines, "", captions.NO_EQUAL_TIME]
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
    standard = table[table["method"] == BASELINE]
    warnings = [
        captions.target_too_high(r.model, r.reached, r.n)
        for r in standard.itertuples()
        if 2 * r.reached < r.n
    ]
    return [
        *lines,
        "",
        *markdown_table(header, rows, right_from=2),
        *(["", *warnings] if warnings else []),
        "",
        captions.profile(PROFILE_PLOT, workloads, scores),
    ]


def equal_time_lines(equal: EqualTime) -> list[str]:
    """Table 4: the equal-time phase's test accuracy per arm, with the epochs each arm got and the
    training time it took against T."""
    lines = [captions.table4(EQUAL_TIME_PLOT)]
    if equal.runs.empty:
        return [*lines, "", captions.NO_EQUAL_TIME]
    header = [
        "Model",
        "Method",
        "T (s)",
        "Epochs",
        "Train time (s)",
        "Test accuracy (%)",
        "n",
        "failed",
    ]
    failed = equal.failed_runs.groupby(["model", "method"]).size()
    rows = [
        [
            model,
            method,
            _num(equal.budgets[model], 1),
            ", ".join(
                f"{e:g}"
                for e in sorted({round(float(e), 2) for e in runs["params.epochs"].dropna()})
            ),
            _num(runs[TIME].median(), 1),
            _pm(*mean_ci(100 * runs[ACC])),
            str(len(runs)),
            str(int(failed.get((model, method), 0))),
        ]
        for (model, method), runs in equal.runs.groupby(["model", "method"], sort=False)
    ]
    return [*lines, "", *markdown_table(header, rows, right_from=2)]


def failed_cell(arm: ArmRuns) -> str:
    """Table 1's `failed`: "1 of 5 diverged" (counted in `n`), then the failures not counted."""
    parts = [f"{arm.diverged} of {len(arm.used)} diverged"] if arm.diverged else []
    parts += [f"{len(arm.failed_runs)} other, excluded"] if len(arm.failed_runs) else []
    return "; ".join(parts) or "0"


def progress_lines(trials: pd.DataFrame) -> list[str]:
    """Where the search-progress plots are and what they show."""
    models = sorted(trials.loc[trials["phase"] == "search", "model"].dropna().unique())
    if not models:
        return []
    plots = ", ".join(f"`{PROGRESS_PLOT.format(model=m)}`" for m in models)
    return ["## Search progress", "", captions.search_progress(plots)]


def studies_lines(arms: list[ArmRuns]) -> list[str]:
    """Table 5 (budget.studies > 1): each study's mean seeds-phase test accuracy per arm and the
    spread between studies (tuning luck as well as seed luck); nothing with one study."""
    seeded = [arm for arm in arms if arm.from_seeds]
    studies = sorted({k for arm in seeded for k in arm.used["study"]})
    if len(studies) < 2:
        return []
    header = [
        "Model",
        "Method",
        *(f"Study {k} (%)" for k in studies),
        "Spread (points)",
    ]
    rows = []
    for arm in seeded:
        means = 100 * arm.used.groupby("study")[ACC].mean()
        rows.append(
            [
                arm.model,
                arm.method,
                *(_num(means.get(k, math.nan), 2) for k in studies),
                _num(means.max() - means.min(), 2),
            ]
        )
    return [captions.table5(len(studies)), "", *markdown_table(header, rows, right_from=2), ""]


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


def condition_lines(arms: list[ArmRuns], equal: EqualTime, slots: dict[str, SlotUse]) -> list[str]:
    """Under which conditions the reported time and memory were measured, from the runs' own
    records: the seeds phase's runs and the equal-time phase's (`slots`: each phase's slot use)."""
    reruns = equal.runs[equal.runs["phase"] == EQUAL_TIME]
    runs = pd.concat([*(arm.used for arm in arms), reruns], ignore_index=True)
    phase = "seeds phase" if all(arm.from_seeds for arm in arms) else "runs shown in Table 1"
    phase += " and the equal-time phase" if len(reruns) else ""
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
        "- Peak memory: "
        f"{'; '.join(memory.get(s, s) for s in sources) or 'process RSS (source not recorded)'}; "
        "above the memory in use once the data set is loaded.",
        "- Dates (UTC): "
        f"{', '.join(sorted(runs['start_time'].dt.strftime('%Y-%m-%d').dropna().unique()))}.",
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


def _count(frame: pd.DataFrame, column: str, value: str) -> int:
    return int((frame[column] == value).sum()) if column in frame else 0


def _time(value: float) -> str:
    return "∞ (miss)" if value == math.inf else _num(value, 1)


def _ratio(value: float) -> str:
    return "∞" if value == math.inf else _num(value, 2)


def _num(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def _short(text: str) -> str:
    """A logged param as the table shows it: numbers to 3 significant digits (lists too)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "/".join(f"{v:.2g}" if isinstance(v, float) else str(v) for v in value)
    return text


def _pm(mean: float, half: float | None, signed: bool = False) -> str:
    if not math.isfinite(mean):
        return "n/a"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return f"{text} ± {'n/a' if half is None else f'{half:.2f}'}"
