"""MLflow tracking: experiment per study, parent run per arm, one child run per trial (written by
study.trial_run).

All writes go through `MlflowClient` from one process (the CLI or the Tune driver), because
several processes writing one sqlite store at once can fail with "database is locked".
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Experiment, Metric, Param, Run, RunTag, SourceType
from mlflow.store.tracking import SEARCH_MAX_RESULTS_THRESHOLD
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)

from study.provenance import git_commit
from trainables.errors import UserError

PARENT_TAG = MLFLOW_PARENT_RUN_ID
EXPERIMENT_KIND_TAG = (
    "mlflow.experimentKind"  # read by MLflow's UI (3.x): which page an experiment opens on
)
MODEL_TRAINING_KIND = (
    "custom_model_development"  # its "model training" kind: the runs table, not GenAI traces
)
MAX_PARAM_LEN = 6000


def default_tracking_uri(directory: str | Path) -> str:
    """`sqlite:///<directory>/mlflow.db`, with the directory created."""
    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def existing_store_uri(directory: str | Path, tracking_uri: str | None = None) -> str:
    """`tracking_uri` or the study's sqlite store, checked to exist (MLflow would create an empty
    one)."""
    path = Path(directory).expanduser().resolve() / "mlflow.db"
    uri = tracking_uri or f"sqlite:///{path}"
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(
                f"no MLflow store at {path}: run a sweep first "
                f"(python -m study sweep --study-dir {directory}) or pass --tracking-uri"
            )
    return uri


def pick_experiment(
    client: MlflowClient, uri: str, study_dir: Path, name: str | None
) -> Experiment:
    """`name`, else the only experiment holding runs, else the one named after the study
    directory."""
    experiments = client.search_experiments()
    names = ", ".join(sorted(e.name for e in experiments))
    if name is not None:
        match = [e for e in experiments if e.name == name]
        if not match:
            raise UserError(f"experiment {name!r} not found in {uri}; experiments there: {names}")
        return match[0]
    with_runs = [e for e in experiments if client.search_runs([e.experiment_id], max_results=1)]
    if not with_runs:
        raise UserError(
            f"the MLflow store {uri} has no runs (experiments: {names}): run a sweep first"
        )
    if len(with_runs) == 1:
        return with_runs[0]
    named = [e for e in with_runs if e.name == Path(study_dir).resolve().name]
    if named:
        return named[0]
    raise UserError(
        f"several experiments in {uri} hold runs ({', '.join(sorted(e.name for e in with_runs))}) "
        f"and none is named {Path(study_dir).resolve().name!r}: pass --experiment NAME"
    )


def runs_table_url(base_url: str, experiment_id: str) -> str:
    """The UI page of an experiment's runs table in model-training mode (MLflow 3 opens
    experiments on GenAI pages)."""
    return (
        f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    )


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None = None
) -> str:
    """The experiment's id, tagged as a model-training experiment; a new one stores artifacts at
    `artifact_location`."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(name, artifact_location)
    )
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    return experiment_id


def start_run(
    client: MlflowClient,
    experiment_id: str,
    run_name: str,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    source: str = "python -m study",
) -> str:
    """Create a run with params and tags (the git commit and entry point as MLflow's source tags,
    the parent link)."""
    all_tags = {
        MLFLOW_GIT_COMMIT: git_commit(),
        MLFLOW_SOURCE_NAME: source,
        MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL),
        **(tags or {}),
    }
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    if params:
        log_params(client, run.info.run_id, params)
    return run.info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    client.log_batch(run_id, params=[Param(k, _param_text(v)) for k, v in sorted(params.items())])


def find_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every active run of the experiment matching `filter_string`, oldest first (one page: a
    study has fewer)."""
    return list(
        client.search_runs(
            [experiment_id],
            filter_string,
            max_results=SEARCH_MAX_RESULTS_THRESHOLD,
            order_by=["attributes.start_time ASC"],
        )
    )


def runs_frame(tracking_uri: str, experiment_id: str, filter_string: str) -> pd.DataFrame:  # noqa: F821
    """MLflow's own `search_runs` as a pandas frame: run_id, status, start/end time, metrics.*,
    params.*, tags.*."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(
        [experiment_id],
        filter_string,
        output_format="pandas",
        order_by=["attributes.start_time ASC"],
    )


def tag_filter(key: str, value: str) -> str:
    """An MLflow filter clause `tags.<key> = '<value>'` (keys with dots quoted, e.g.
    mlflow.parentRunId)."""
    name = f"`{key}`" if "." in key else key
    return f"tags.{name} = '{value}'"


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of `metrics`; lists of numbers become `key/i` entries."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (bool, int, float)):
            out[key] = float(value)
        elif (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, (int, float)) for v in value)
        ):
            out.update({f"{key}/{i}": float(v) for i, v in enumerate(value)})
    return out


def log_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, Any],
    step: int = 0,
    timestamp_ms: int | None = None,
) -> None:
    """The numeric entries of `metrics` at `step` (non-finite values as NaN)."""
    log_batch(client, run_id, metric_entities(metrics, step, timestamp_ms))


def metric_entities(
    metrics: dict[str, Any], step: int = 0, timestamp_ms: int | None = None
) -> list[Metric]:
    """MLflow Metrics of the numeric entries of `metrics` at `step` (non-finite values as NaN)."""
    timestamp = timestamp_ms or int(time.time() * 1000)
    return [Metric(k, _finite(v), timestamp, step) for k, v in scalar_metrics(metrics).items()]


def log_batch(
    client: MlflowClient, run_id: str, metrics: list[Metric], tags: dict[str, str] | None = None
) -> None:
    """`metrics` and `tags` in one call (MLflow splits it into batches the store takes)."""
    client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in (tags or {}).items()])


def fail_run(client: MlflowClient, run_id: str, reason: str) -> None:
    client.set_tag(run_id, "error", reason[:5000])
    client.set_terminated(run_id, status="FAILED")


def _param_text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:MAX_PARAM_LEN]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


ARM_SUMMARY_KEYS = ("test_acc", "train_time_s", "peak_mem_mb", "compute_epochs")


def log_arm_summary(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    best_configs: dict[str, dict[str, Any]],
) -> None:
    """An arm's parent run: its best configs as params, each key after its prefix (`""`, or
    `study<k>.` when there are several studies), once; the mean of its seeds runs' final metrics
    as `final/*`, again after every sweep, so that a seed top-up shows in them."""
    if client.get_run(parent_run_id).info.status != "FINISHED":  # first summary of the arm
        for prefix, config in best_configs.items():
            log_params(client, parent_run_id, {prefix + k: v for k, v in config.items()})
    filters = " and ".join(
        [
            tag_filter("role", "trial"),
            tag_filter("phase", "seeds"),
            tag_filter(PARENT_TAG, parent_run_id),
            "attributes.status = 'FINISHED'",
        ]
    )
    seeds = find_runs(client, experiment_id, filters)
    means = {}
    for key in ARM_SUMMARY_KEYS:
        values = [
            run.data.metrics[f"final/{key}"] for run in seeds if f"final/{key}" in run.data.metrics
        ]
        if values:
            means[f"final/{key}"] = sum(values) / len(values)
    log_metrics(client, parent_run_id, {**means, "final/seeds": len(seeds)})
    client.set_tag(
        parent_run_id,
        "mlflow.note.content",
        "Best config of the search as params; `final/*` metrics: the mean over "
        f"{len(seeds)} seeds runs.",
    )


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """A subcommand's `--study-dir`, `--tracking-uri` and `--experiment`: which store to read."""
    p.add_argument("--study-dir", type=Path, required=True, help="the sweep's study directory")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default: sqlite:///<study-dir>/mlflow.db)"
    )
    p.add_argument(
        "--experiment",
        default=None,
        help="default: the only experiment with runs, else the one named after the study directory",
    )
