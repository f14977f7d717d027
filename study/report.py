"""`python -m study report`: a study's trials as Parquet, a Table-1 style Markdown comparison and plots.

Reads the MLflow store alone (layout: one parent run per arm with `role=arm`, one child run per trial
with `role=trial` and `phase` search|seeds), so a report can be rebuilt at any time after a sweep.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from study import verdict
from study.spec import Report
from study.tracking import existing_store_uri, find_runs, pick_experiment, runs_frame, tag_filter
from study.verdict import BASELINE, CONFIDENCE, mean_ci

log = logging.getLogger(__name__)

COMPARED = ("layer_to_layer", "greedy")
METHOD_ORDER = (BASELINE, *COMPARED)
HISTORY_KEYS = ("val_acc", "train_loss", "epoch_time_s", "peak_mem_mb")
SUMMARY_KEYS = ("test_acc", "train_time_s", "peak_mem_mb", "best_val_acc", "val_acc")
PROMOTED_TAGS = ("arm", "model", "method", "phase", "trial_id", "error")
FAILED_STATUSES = ("FAILED", "KILLED")
MARKERS = "osD^vPX*<>"
ARTIFACT_DIR = "report"
PROFILE_PLOT = "performance_profile.png"


def final_metric(key: str) -> str:
    """The trials-frame column of a trial's final metric `key` (logged once as `final/<key>`)."""
    return f"metrics.final/{key}"


ACC, TIME, MEM = final_metric("test_acc"), final_metric("train_time_s"), final_metric("peak_mem_mb")
VAL = final_metric("val_acc")
EXACT_MEMORY = {
    "cuda_max_memory_allocated": "CUDA max_memory_allocated (exact bytes held by tensors)",
    "cpu_allocator_trace": "torch.profiler allocator events (exact bytes held by CPU tensors)",
}
RSS_MEMORY = {
    "cpu_rss": "process RSS high-water mark (VmHWM; pages, allocator cache and library buffers)"
}
TAUS = np.linspace(1.0, verdict.TAU_MAX, 301)


@dataclass
class ReportResult:
    """What `write_report` wrote: the folder, the Markdown text (tables + captions) and the files."""

    report_dir: Path
    markdown: str
    trials_path: Path
    epochs_path: Path
    plots: list[Path]
    parents_logged: int


@dataclass
class ArmRuns:
    """One (model, method) arm: the runs its statistics use and the failures among the runs considered."""

    model: str
    method: str
    from_seeds: (
        bool  # False: no seeds-phase runs, `used` is the best search trial by validation accuracy
    )
    used: pd.DataFrame  # FINISHED runs with a test accuracy; column `pair` pairs runs across arms
    failed_runs: pd.DataFrame  # FAILED or KILLED runs of the same phase


@dataclass
class EqualTime:
    """The equal-time results: targets, time-to-target per arm, accuracy at the baseline's median training time."""

    targets: dict[str, verdict.Target]  # per model
    time_to_target: pd.DataFrame  # verdict.time_to_target_table
    budgets: dict[str, float]  # per model: the baseline's median training time (s)
    runs: (
        pd.DataFrame
    )  # the used runs: model, method, pair, test_acc, val_acc, train_time_s, acc_at_time
    profile: pd.DataFrame  # performance profile: rho per method (columns) over TAUS (index)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="rebuild a study's report (Parquet, Markdown table, plots) from MLflow"
    )
    p.add_argument("--study-dir", type=Path, required=True, help="the sweep's study directory")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default: sqlite:///<study-dir>/mlflow.db)"
    )
    p.add_argument(
        "--experiment",
        default=None,
        help="default: the only experiment with runs, else the one named after the study directory",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = write_report(args.study_dir, args.tracking_uri, args.experiment)
    print(result.markdown)
    print(
        f"report written to {result.report_dir} ({result.parents_logged} arm runs got the artifacts)"
    )
    return 0


def write_report(
    study_dir: Path, tracking_uri: str | None = None, experiment: str | None = None
) -> ReportResult:
    """Rebuild `<study_dir>/report/` from the store and log report.md and the plots to every arm's parent run."""
    study_dir = Path(study_dir)
    uri = existing_store_uri(study_dir, tracking_uri)
    client = MlflowClient(uri)
    exp = pick_experiment(client, uri, study_dir, experiment)
    runs = runs_frame(uri, exp.experiment_id, tag_filter("role", "trial"))
    if runs.empty:
        raise ValueError(
            f"experiment {exp.name!r} in {uri} has no trial runs (tag role=trial): run a sweep first"
        )
    out = study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(runs)
    epochs = epochs_frame(client, trials)
    trials_path, epochs_path = out / "trials.parquet", out / "epochs.parquet"
    trials.to_parquet(trials_path, index=False)
    epochs.to_parquet(epochs_path, index=False)

    parents = find_runs(
        client, exp.experiment_id, tag_filter("role", "arm")
    )  # read once: settings, spend, plots
    arms, settings = select_arms(trials), report_settings(parents)
    equal = equal_time(arms, epochs, settings)
    markdown = render_markdown(exp.name, trials, arms, equal, settings, search_spent(parents))
    report_md = out / "report.md"
    report_md.write_text(markdown)
    shared = [
        scatter_plot(trials, TIME, "train time (s)", out / "acc_vs_time.png"),
        scatter_plot(trials, MEM, "peak memory (MB)", out / "acc_vs_memory.png"),
        profile_plot(equal, out / PROFILE_PLOT),
    ]
    curves = {
        arm: curve_plot(
            epochs[epochs["arm"] == arm], arm, out / f"val_curves_{arm.replace('/', '_')}.png"
        )
        for arm in epochs["arm"].unique()
    }
    logged = log_to_parents(client, parents, exp.experiment_id, [report_md, *shared], curves)
    log.info("report of %s (%d trials) written to %s", exp.name, len(trials), out)
    return ReportResult(
        out, markdown, trials_path, epochs_path, [*shared, *curves.values()], logged
    )


def trials_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """MLflow's runs frame (run_id, status, times, `metrics.*`, `params.*`, `tags.*`) with the contract tags,
    the run name and the seed as columns of their own, and every SUMMARY_KEYS final metric present."""
    frame = runs.copy()
    for key in PROMOTED_TAGS:
        frame[key] = frame.get(f"tags.{key}")
    frame["arm"] = frame["arm"].fillna(frame["model"] + "/" + frame["method"])
    frame["run_name"] = frame["tags.mlflow.runName"]
    frame["seed"] = pd.to_numeric(frame.get("params.seed"), errors="coerce").astype("Int64")
    for key in SUMMARY_KEYS:
        if final_metric(key) not in frame:
            frame[final_metric(key)] = np.nan
    return frame


def epochs_frame(client: MlflowClient, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (trial, epoch) from the MLflow metric history of HISTORY_KEYS (step = epoch)."""
    columns = [
        "run_id",
        "arm",
        "model",
        "method",
        "phase",
        "status",
        "seed",
        "epoch",
        *HISTORY_KEYS,
    ]
    rows = []
    for trial in trials[columns[:7]].to_dict("records"):
        per_step: dict[int, dict[str, float]] = {}
        for key in HISTORY_KEYS:
            for metric in client.get_metric_history(trial["run_id"], key):
                per_step.setdefault(metric.step, {})[key] = metric.value
        rows += [{**trial, "epoch": step, **values} for step, values in sorted(per_step.items())]
    frame = pd.DataFrame(rows, columns=columns)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def select_arms(trials: pd.DataFrame) -> list[ArmRuns]:
    """Per arm, in table order: the finished seeds-phase runs, else the best search trial by validation accuracy."""
    arms = []
    for model, method in arm_order(trials):
        runs = trials[(trials["model"] == model) & (trials["method"] == method)]
        from_seeds = bool((runs["phase"] == "seeds").any())
        considered = runs[runs["phase"] == "seeds"] if from_seeds else runs
        usable = considered[(considered["status"] == "FINISHED") & np.isfinite(considered[ACC])]
        if from_seeds:
            used = usable.drop_duplicates("seed", keep="last").assign(
                pair=lambda f: f["seed"].astype(str)
            )
        else:
            score = usable[final_metric("best_val_acc")].fillna(usable[VAL]).fillna(-math.inf)
            used = (
                usable.loc[[score.idxmax()]].assign(pair="best")
                if len(usable)
                else usable.assign(pair="")
            )
        failed = considered[considered["status"].isin(FAILED_STATUSES)]
        arms.append(ArmRuns(model, method, from_seeds, used, failed))
    return arms


def arm_order(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, method) pairs: models alphabetically, methods standard, layer_to_layer, greedy, then the rest."""
    pairs = trials[["model", "method"]].drop_duplicates().itertuples(index=False)
    rank = {method: i for i, method in enumerate(METHOD_ORDER)}
    return sorted(((m, k) for m, k in pairs), key=lambda p: (p[0], rank.get(p[1], len(rank)), p[1]))


def search_spent(parents: list[Run]) -> dict[str, tuple[int, int]]:
    """arm -> (trial-epochs, trials) its search spent: the `search/*` metrics on its parent run (study/tune_arm.py)."""
    spent = {}
    for parent in parents:
        metrics = parent.data.metrics
        if "search/epochs_spent" in metrics:
            spent[parent.data.tags["arm"]] = (
                int(metrics["search/epochs_spent"]),
                int(metrics["search/trials"]),
            )
    return spent


def report_settings(parents: list[Run]) -> Report:
    """The spec's [report] section, from the `report.*` params the sweep logged on the arm runs (else defaults)."""
    fields = set(Report.__dataclass_fields__)
    for parent in parents:
        values = {
            key.removeprefix("report."): json.loads(value)
            for key, value in parent.data.params.items()
            if key.removeprefix("report.") in fields and key.startswith("report.")
        }
        if values:
            return Report(**values)
    return Report()


def equal_time(arms: list[ArmRuns], epochs: pd.DataFrame, settings: Report) -> EqualTime:
    """Targets, time-to-target per arm and accuracy at the baseline's median training time (DESIGN §5a)."""
    columns = {ACC: "test_acc", VAL: "val_acc", TIME: "train_time_s"}
    keep = ["run_id", "model", "method", "pair", *columns]
    used = pd.concat([arm.used[keep] for arm in arms], ignore_index=True).rename(columns=columns)
    timed = pd.concat(
        [used, *(arm.failed_runs[["run_id", "model", "method"]] for arm in arms if arm.from_seeds)],
        ignore_index=True,
    )
    targets = verdict.workload_targets(
        used, settings.targets(sorted(used["model"].unique())), settings.target_tolerance
    )
    table = verdict.time_to_target_table(timed, epochs, targets)
    budgets = {
        model: float(runs["train_time_s"].median())
        for model, runs in used[used["method"] == BASELINE].groupby("model")
        if runs["train_time_s"].notna().any()
    }
    clock = verdict.training_clock(epochs[epochs["run_id"].isin(used["run_id"])])
    per_run = dict(iter(clock.groupby("run_id", sort=False)))
    used["acc_at_time"] = [
        verdict.accuracy_at_time(
            per_run.get(row.run_id, clock.iloc[:0]), budgets[row.model], row.val_acc
        )
        if row.model in budgets
        else math.nan
        for row in used.itertuples()
    ]
    return EqualTime(targets, table, budgets, used, verdict.performance_profile(table, TAUS))


def comparisons(equal: EqualTime) -> list[verdict.Comparison]:
    """Every method against the baseline per model, at equal epochs and at equal time, Holm-corrected together."""
    runs = equal.runs
    return verdict.with_holm(
        verdict.compare(runs, "test_acc", "equal epochs", "test accuracy")
        + verdict.compare(
            runs[runs["model"].isin(list(equal.budgets))],
            "acc_at_time",
            "equal time",
            "validation accuracy",
        )
    )


def render_markdown(
    experiment: str,
    trials: pd.DataFrame,
    arms: list[ArmRuns],
    equal: EqualTime,
    settings: Report,
    spent: dict[str, tuple[int, int]],
) -> str:
    """The report: Tables 1-2 (equal epochs), 3-4 (equal time), the verdict lines and the measurement conditions."""
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
        f"**Table 1.** Test accuracy (%, mean ± {CONFIDENCE:.0%} CI over seeds, t-distribution), total "
        f"training time (s, mean) and peak memory (MB, mean; `RSS`: process high-water mark, not exact) per "
        f"model and training method on {datasets}. `n`: runs in the statistics; `failed`: failed runs of the "
        "same phase, excluded from the statistics.",
    ]
    if not all(arm.from_seeds for arm in arms):
        lines.append(
            "† no seeds-phase runs for this arm: the best search-phase trial by validation accuracy "
            "is shown instead (n = 1, no CI)."
        )
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
        f"**Table 2.** Paired differences against {BASELINE} training per model (runs paired by seed): "
        f"test accuracy in points, train time and peak memory as ratios (method / {BASELINE}); "
        f"mean ± {CONFIDENCE:.0%} CI over the pairs. Memory measured as RSS is not compared.",
    ]
    paired = paired_rows(arms)
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
        else ["", f"No model has both {BASELINE} and one of {', '.join(COMPARED)}."]
    )
    lines += [
        "",
        *time_to_target_lines(equal),
        "",
        *equal_time_lines(equal),
        "",
        *verdict_lines(comparisons(equal), settings.alpha),
        "",
        *condition_lines(arms),
    ]
    return "\n".join(lines) + "\n"


def paired_rows(arms: list[ArmRuns]) -> list[list[str]]:
    """Per model and compared method: mean ± CI of the per-pair accuracy difference and time/memory ratios."""
    by_key = {(arm.model, arm.method): arm for arm in arms}
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
                    _pm(*mean_ci(ratio[TIME])),
                    memory,
                ]
            )
    return rows


def exact_memory(runs: pd.DataFrame) -> bool:
    """Whether every run's peak memory is an exact tensor-bytes count (tag `mem_source`), not RSS."""
    return (
        "tags.mem_source" in runs
        and len(runs) > 0
        and bool(runs["tags.mem_source"].isin(EXACT_MEMORY).all())
    )


def time_to_target_lines(equal: EqualTime) -> list[str]:
    """Table 3: time-to-target per arm, the targets' origin and the performance-profile scores."""
    targets = "; ".join(
        f"{model} {100 * t.val_acc:.2f}% ({t.origin})" for model, t in sorted(equal.targets.items())
    )
    lines = [
        f"**Table 3.** Time to target (AlgoPerf-style, equal time): training seconds (cumulative "
        "`epoch_time_s`, evaluation excluded) until validation accuracy first reaches the model's target, "
        "median over the runs; a run that never reaches it counts as ∞ (shown as `∞ (miss)`), and so does an "
        "arm where at least half of the runs miss. `Reached`: runs that reached the target / runs (failed "
        f"seeds-phase runs count as misses unless they reached it first). `× best`: time / the model's fastest "
        f"arm. Targets: {targets or 'none (no ' + BASELINE + ' runs)'}."
    ]
    table = equal.time_to_target
    if table.empty:
        return [
            *lines,
            "",
            "No arm has a target (the target defaults need a finished standard run).",
        ]
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
        f"Performance profile (`{PROFILE_PLOT}`): the share of the {workloads} workload(s) (model × dataset) "
        f"each method solves within τ × the best time, τ from 1 to {verdict.TAU_MAX:g}. Score (area under the "
        f"profile / {verdict.TAU_MAX - 1:g}; 1 = fastest on every workload, 0 = never within "
        f"{verdict.TAU_MAX:g}×): {scores}.",
    ]


def equal_time_lines(equal: EqualTime) -> list[str]:
    """Table 4: validation accuracy per arm after the baseline's median training time."""
    runs = equal.runs[equal.runs["model"].isin(list(equal.budgets))]
    lines = [
        f"**Table 4.** Accuracy at equal time: validation accuracy (%, mean ± {CONFIDENCE:.0%} CI) after "
        f"{BASELINE}'s median training time on the same model (the budget): a run's final val_acc if it "
        "finished within the budget, else that of its last epoch that ended within it. Validation, not test: "
        "test accuracy is only measured at the end of training. `n`: runs with an epoch within the budget."
    ]
    if runs.empty:
        return [*lines, "", f"No model has a finished {BASELINE} run to set the budget."]
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
        f"Each method against {BASELINE} per model, at equal epochs (test accuracy after the full budget) and at "
        f"equal time (validation accuracy at {BASELINE}'s median training time, Table 4). Paired t-tests over "
        f"the seeds (a pair = the same seed), Holm's correction across all {sum(math.isfinite(c.test.p) for c in found)} "
        f"tested comparisons at α = {alpha:g}; effects in points with their {CONFIDENCE:.0%} CI (t-interval, not "
        'adjusted). Fewer than 2 pairs: no test, the verdict is "matches" and the comparison is not in the Holm '
        "family. Differences equal on every seed (zero variance): p = 1 when all are 0, else p = 0.",
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
        lines += ["", f"No model has both {BASELINE} and another method: nothing to compare."]
    return lines


def condition_lines(arms: list[ArmRuns]) -> list[str]:
    """Under which conditions the reported time and memory were measured, from the runs' own records."""
    runs = pd.concat([arm.used for arm in arms], ignore_index=True)
    phase = "seeds phase" if all(arm.from_seeds for arm in arms) else "runs shown in Table 1"
    lines = [
        "## Measurement conditions",
        "",
        f"Time and memory above come from the {phase} ({len(runs)} runs), as those runs recorded them:",
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
        "- Training time: the sum of `epoch_time_s`, the training loop only (evaluation, checkpoints and "
        "start-up excluded), with CUDA synchronised at both ends.",
        f"- Peak memory: {'; '.join(memory.get(s, s) for s in sources) or 'process RSS (source not recorded)'}; "
        "above the memory in use once the data set is loaded.",
        f"- Dates (UTC): {', '.join(sorted(runs['start_time'].dt.strftime('%Y-%m-%d').dropna().unique()))}.",
    ]
    return lines


def max_concurrent(runs: pd.DataFrame) -> int:
    """The largest number of runs whose [start, end] intervals overlap on one node (`tags.node_id`)."""
    nodes = (
        runs["tags.node_id"].fillna("")
        if "tags.node_id" in runs
        else pd.Series("", index=runs.index)
    )
    most = 0
    for _, group in runs.groupby(nodes):
        events = sorted(
            [(t, 1) for t in group["start_time"].dropna()]
            + [(t, -1) for t in group["end_time"].dropna()],
            key=lambda e: (e[0], e[1]),
        )  # an end before a start at the same instant: no overlap
        level = 0
        for _, change in events:
            level += change
            most = max(most, level)
    return most


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


def scatter_plot(trials: pd.DataFrame, x_key: str, x_label: str, path: Path) -> Path:
    """Test accuracy vs `x_key`, one point per finished run: colour per method, marker per model."""
    done = trials[
        (trials["status"] == "FINISHED") & np.isfinite(trials[ACC]) & np.isfinite(trials[x_key])
    ]
    order = arm_order(trials)
    colours = _method_colours([method for _, method in order])
    markers = {
        model: MARKERS[i % len(MARKERS)]
        for i, model in enumerate(dict.fromkeys(m for m, _ in order))
    }
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for (model, method, phase), runs in done.groupby(["model", "method", "phase"], dropna=False):
        seeds = phase == "seeds"
        ax.scatter(
            runs[x_key],
            100 * runs[ACC],
            color=colours[method],
            marker=markers[model],
            s=45 if seeds else 20,
            alpha=1.0 if seeds else 0.35,
        )
    handles = [Line2D([], [], ls="none", marker="o", color=c, label=m) for m, c in colours.items()]
    handles += [
        Line2D([], [], ls="none", marker=k, color="0.4", label=m) for m, k in markers.items()
    ]
    ax.legend(handles=handles, fontsize="small")
    ax.set(
        xlabel=x_label,
        ylabel="test accuracy (%)",
        title=f"test accuracy vs {x_label} (one point per run; faded: search phase)",
    )
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def curve_plot(epochs: pd.DataFrame, arm: str, path: Path) -> Path:
    """Validation accuracy vs epoch for one arm, one line per trial: seeds phase bold, failed runs dashed."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    for _, hist in epochs.dropna(subset=["val_acc"]).groupby("run_id", sort=False):
        seeds = hist["phase"].iloc[0] == "seeds"
        ax.plot(
            hist["epoch"],
            100 * hist["val_acc"],
            color="C0" if seeds else "0.55",
            lw=2.2 if seeds else 0.8,
            ls="--" if hist["status"].iloc[0] in FAILED_STATUSES else "-",
            alpha=1.0 if seeds else 0.6,
        )
    handles = [
        Line2D([], [], color="C0", lw=2.2, label="seeds phase"),
        Line2D([], [], color="0.55", lw=0.8, label="search phase"),
        Line2D([], [], color="0.3", ls="--", label="failed"),
    ]
    ax.legend(handles=handles, fontsize="small")
    ax.set(
        xlabel="epoch",
        ylabel="validation accuracy (%)",
        title=f"{arm}: validation accuracy per trial",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def profile_plot(equal: EqualTime, path: Path) -> Path:
    """The performance profile: per method, the share of workloads solved within tau x the best time."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    colours = _method_colours(list(equal.profile.columns))
    for method in equal.profile.columns:
        ax.step(
            equal.profile.index,
            equal.profile[method],
            where="post",
            color=colours[method],
            lw=2,
            label=method,
        )
    workloads = equal.time_to_target["model"].nunique()
    ax.set(
        xlabel="τ (time-to-target / best time on the workload)",
        ylabel="share of workloads solved",
        title=f"performance profile over {workloads} workload(s) (model × dataset)",
        xlim=(1, verdict.TAU_MAX),
        ylim=(-0.03, 1.03),
    )
    if len(equal.profile.columns):
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def _method_colours(methods: list[str]) -> dict[str, tuple[float, ...]]:
    palette = colormaps["tab10"]
    return {method: palette(i % 10) for i, method in enumerate(dict.fromkeys(methods))}


def log_to_parents(
    client: MlflowClient,
    parents: list[Run],
    experiment_id: str,
    shared: list[Path],
    curves: dict[str, Path],
) -> int:
    """Log `shared` files and the arm's own curve plot under `report/` to every `role=arm` run; return how many."""
    for parent in parents:
        tags = parent.data.tags
        arm = tags.get("arm") or f"{tags.get('model')}/{tags.get('method')}"
        for path in [*shared, *([curves[arm]] if arm in curves else [])]:
            client.log_artifact(parent.info.run_id, str(path), ARTIFACT_DIR)
    if not parents:
        log.warning(
            "no arm runs (tag role=arm) in experiment %s: the report is only in the study directory",
            experiment_id,
        )
    return len(parents)
