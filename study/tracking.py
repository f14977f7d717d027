"""MLflow tracking: experiment per study, parent run per arm, one child run per trial.

All writes go through `MlflowClient` from one process (the CLI or the Tune driver), because
several processes writing one sqlite store at once can fail with "database is locked".
"""
from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, Run
from mlflow.tracking import MlflowClient

from trainables.errors import UserError

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000


def default_tracking_uri(directory: str | Path) -> str:
    """`sqlite:///<directory>/mlflow.db`, with the directory created."""
    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def existing_store_uri(directory: str | Path, tracking_uri: str | None = None) -> str:
    """`tracking_uri` or the study's sqlite store, checked to exist (MLflow would create an empty one)."""
    path = Path(directory).expanduser().resolve() / "mlflow.db"
    uri = tracking_uri or f"sqlite:///{path}"
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(f"no MLflow store at {path}: run a sweep first "
                                    f"(python -m study sweep --study-dir {directory}) or pass --tracking-uri")
    return uri


def git_commit() -> str:
    """The code version for the `code_version` tag: the git commit, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The experiment's id; a new one stores artifacts at `artifact_location` (MLflow's default: ./mlruns)."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name, artifact_location)


def start_run(
    client: MlflowClient, experiment_id: str, run_name: str, params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None, parent_run_id: str | None = None,
) -> str:
    """Create a run with params and tags (incl. the git commit and the parent link); return its id."""
    all_tags = {"code_version": git_commit(), **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, _param_text(v)) for k, v in sorted(params.items())])
    return run.info.run_id


def search_runs(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every active run of the experiment matching `filter_string` (all result pages), oldest first."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def tag_filter(key: str, value: str) -> str:
    """An MLflow filter clause `tags.<key> = '<value>'` (keys with dots quoted, e.g. mlflow.parentRunId)."""
    name = f"`{key}`" if "." in key else key
    return f"tags.{name} = '{value}'"


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite-or-NaN numeric entries of `metrics`; lists of numbers become `key/i` entries."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            out.update({f"{key}/{i}": float(v) for i, v in enumerate(value)})
    return out


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
    timestamp = _now_ms()
    batch = [Metric(k, _finite(v), timestamp, step) for k, v in scalar_metrics(metrics).items()]
    for start in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
        client.log_batch(run_id, metrics=batch[start : start + 900])


def log_final(client: MlflowClient, run_id: str, final: dict[str, Any], status: str = "FINISHED") -> None:
    """Final scalar metrics, text results (device, mem_source) as tags, everything as a JSON artifact, then close."""
    summary = {k: v for k, v in final.items() if k != "history"}
    log_metrics(client, run_id, summary, step=int(final.get("epochs_run", 0)))
    for key, value in summary.items():
        if isinstance(value, str):
            client.set_tag(run_id, key, value)
    log_json(client, run_id, "final_metrics.json", final)
    client.set_terminated(run_id, status=status)


def log_json(client: MlflowClient, run_id: str, name: str, payload: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, default=str))
        client.log_artifact(run_id, str(path))


def fail_run(client: MlflowClient, run_id: str, reason: str) -> None:
    client.set_tag(run_id, "error", reason[:5000])
    client.set_terminated(run_id, status="FAILED")


def _param_text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:MAX_PARAM_LEN]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else float("nan")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


__all__ = [
    "PARENT_TAG", "default_tracking_uri", "existing_store_uri", "fail_run", "get_or_create_experiment", "git_commit",
    "log_final", "log_json", "log_metrics", "scalar_metrics", "search_runs", "start_run", "tag_filter",
]
