"""`python -m study report`: a study's trials as Parquet, a Table-1 style Markdown comparison and
plots.

Reads the MLflow store (layout: one parent run per arm with `role=arm`, one child run per trial
with `role=trial` and `phase` search|seeds|equal_time) and the searches' Optuna studies
(`<study-dir>/optuna.db`), so a report can be rebuilt at any time after a sweep. `frames` loads
and selects the runs, `tables` writes the Markdown (its prose in `captions`), `plots` draws the
figures, `settings*` the "at which settings" section; this module ties them together and logs
the result to the arm runs.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from study.optuna_storage import STORAGE_FILE
from study.report.frames import (
    MEM,
    TIME,
    epochs_frame,
    equal_time,
    report_settings,
    search_spent,
    select_arms,
    trials_frame,
    with_chance,
)
from study.report.plots import (
    EQUAL_TIME_PLOT,
    PROFILE_PLOT,
    curve_plot,
    equal_time_plot,
    profile_plot,
    progress_plots,
    scatter_plot,
)
from study.report.settings import load_searches
from study.report.settings_plots import arm_figures
from study.report.settings_text import settings_lines
from study.report.tables import render_markdown
from study.report.timing import phase_slot_use
from study.tracking import (
    add_store_arguments,
    existing_store_uri,
    find_runs,
    pick_experiment,
    runs_frame,
    tag_filter,
)
from trainables.errors import UserError

log = logging.getLogger(__name__)


ARTIFACT_DIR = "report"


@dataclass
class ReportResult:
    """What `write_report` wrote: the folder, the Markdown text (tables + captions) and the
    files."""

    report_dir: Path
    markdown: str
    trials_path: Path
    epochs_path: Path
    plots: list[Path]
    parents_logged: int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report", help="rebuild a study's report (Parquet, Markdown table, plots) from MLflow"
    )
    add_store_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = write_report(args.study_dir, args.tracking_uri, args.experiment)
    print(result.markdown)
    print(
        f"report written to {result.report_dir} ({result.parents_logged} arm runs got the "
        "artifacts)"
    )
    return 0


def write_report(
    study_dir: Path, tracking_uri: str | None = None, experiment: str | None = None
) -> ReportResult:
    """Rebuild `<study_dir>/report/` from the store and log report.md and the plots to every
    arm's parent run."""
    study_dir = Path(study_dir)
    uri = existing_store_uri(study_dir, tracking_uri)
    client = MlflowClient(uri)
    exp = pick_experiment(client, uri, study_dir, experiment)
    runs = runs_frame(uri, exp.experiment_id, tag_filter("role", "trial"))
    if runs.empty:
        raise UserError(
            f"experiment {exp.name!r} in {uri} has no trial runs (tag role=trial): run a sweep "
            "first"
        )
    out = study_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    trials = with_chance(client, trials_frame(runs))
    epochs = epochs_frame(client, trials)
    trials_path, epochs_path = out / "trials.parquet", out / "epochs.parquet"
    trials.to_parquet(trials_path, index=False)
    epochs.to_parquet(epochs_path, index=False)

    parents = find_runs(
        client, exp.experiment_id, tag_filter("role", "arm")
    )  # read once: settings, spend, plots
    arms, settings = select_arms(trials), report_settings(parents)
    equal = equal_time(arms, trials, epochs, parents)
    slots = phase_slot_use(trials, epochs)
    markdown = render_markdown(
        exp.name, trials, arms, equal, settings, search_spent(parents), slots
    )
    searches = load_searches(study_dir)  # "at which settings": the arms' Optuna studies
    markdown += "\n" + "\n".join(settings_lines(searches, STORAGE_FILE))
    report_md = out / "report.md"
    report_md.write_text(markdown)
    shared = [
        scatter_plot(trials, TIME, "train time (s)", out / "acc_vs_time.png"),
        scatter_plot(trials, MEM, "peak memory (MB)", out / "acc_vs_memory.png"),
        profile_plot(equal, out / PROFILE_PLOT),
        equal_time_plot(equal, out / EQUAL_TIME_PLOT),
        *progress_plots(trials, out),
    ]
    per_arm: dict[str, list[Path]] = {
        arm: [
            curve_plot(
                epochs[epochs["arm"] == arm], arm, out / f"val_curves_{arm.replace('/', '_')}.png"
            )
        ]
        for arm in epochs["arm"].unique()
    }
    for search in searches:
        per_arm.setdefault(search.arm, []).extend(arm_figures(search, out))
    logged = log_to_parents(client, parents, exp.experiment_id, [report_md, *shared], per_arm)
    log.info("report of %s (%d trials) written to %s", exp.name, len(trials), out)
    figures = [path for paths in per_arm.values() for path in paths]
    return ReportResult(out, markdown, trials_path, epochs_path, [*shared, *figures], logged)


def log_to_parents(
    client: MlflowClient,
    parents: list[Run],
    experiment_id: str,
    shared: list[Path],
    per_arm: dict[str, list[Path]],
) -> int:
    """Log `shared` files and the arm's own figures under `report/` to every `role=arm` run;
    return how many runs got them."""
    for parent in parents:
        tags = parent.data.tags
        arm = tags.get("arm") or f"{tags.get('model')}/{tags.get('method')}"
        for path in [*shared, *per_arm.get(arm, [])]:
            client.log_artifact(parent.info.run_id, str(path), ARTIFACT_DIR)
    if not parents:
        log.warning(
            "no arm runs (tag role=arm) in experiment %s: the report is only in the study "
            "directory",
            experiment_id,
        )
    return len(parents)
