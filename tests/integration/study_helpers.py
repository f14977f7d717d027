"""What the integration tests share: a tiny study spec, readers of a study's MLflow runs and Tune
state, and of a report's Markdown tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from study import tracking

TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "dataset": "digits",
    "models": ["seed_cnn"],
    "methods": ["standard", "layer_to_layer"],
    "budget": {
        "epochs": 2,
        "max_trials": 3,
        # standard epochs of FLOPs: room for the 3 trials of every arm (a layer_to_layer trial
        # on seed_cnn costs about 2.1; the cap, not the budget, ends these searches)
        "search_epochs": 7,
        "seeds": 2,
        "grace_period": 1,
        # one trial at a time: each concurrent trial is one more process to start (about 5 s of
        # CPU, its imports), and a tiny trial trains for well under a second
        "max_concurrent": 1,
        "max_failures": 1,
    },
    "resources": {"cpu": 1},
    "search": {"startup_trials": 2},
    "fixed": {"width": 0.125, "max_train_samples": 200},
}


def spec_data(**overrides: Any) -> dict[str, Any]:
    """A copy of TINY_SPEC with top-level values replaced and section tables updated key by key."""
    out = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in TINY_SPEC.items()
    }
    for key, value in overrides.items():
        out[key] = (
            {**out[key], **value}
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def mlflow_runs(study_dir: Path, experiment: str, role: str) -> list[Run]:
    """The active runs with tag role=`role` in the study's sqlite store."""
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    exp = client.get_experiment_by_name(experiment)
    return tracking.find_runs(client, exp.experiment_id, tracking.tag_filter("role", role))


def metric_steps(study_dir: Path, run: Run, key: str) -> list[int]:
    """The steps at which `key` was logged in `run`, sorted (duplicates kept)."""
    client = MlflowClient(tracking.default_tracking_uri(study_dir))
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


def tune_trial_ids(study_dir: Path, name: str) -> dict[str, str]:
    """trial id -> status of the Tune experiment `name`, as its saved state knows them."""
    from ray import tune

    return {
        t.trial_id: t.status for t in tune.ExperimentAnalysis(str(study_dir / "tune" / name)).trials
    }


def table_lines(markdown: str, table: str) -> list[str]:
    """The lines of `**Table N.**`'s caption and table, up to the next table or section."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"**{table}.**"))
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("**Table", "## "))),
        len(lines),
    )
    return lines[start:end]


def row(markdown: str, table: str, *first: str) -> list[str]:
    """The cells of the one row of `table` (e.g. "Table 1") whose first cells are `first`."""
    prefix = "| " + " | ".join(first) + " |"
    lines = [line for line in table_lines(markdown, table) if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one row {prefix!r} in:\n{markdown}"
    return [cell.strip() for cell in lines[0].strip("|").split("|")]
