"""`python -m study trial` as a user runs it: exit codes, JSON output, the MLflow run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )


def test_unknown_model_fails_fast_listing_valid_models(tmp_path: Path):
    result = run_cli("trial", "--model", "nope", "--out", "m.json", cwd=tmp_path)
    assert result.returncode != 0
    assert (
        "valid models" in result.stderr
        and "seed_cnn" in result.stderr
        and "resnet18" in result.stderr
    )
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "mlflow.db").exists()


def test_bad_set_value_names_key(tmp_path: Path):
    result = run_cli("trial", "--set", "lr=-1", "--no-mlflow", cwd=tmp_path)
    assert result.returncode != 0 and "lr=-1" in result.stderr


def test_trial_writes_json_and_mlflow_run(tmp_path: Path):
    result = run_cli(
        "trial",
        "--epochs",
        "2",
        "--set",
        "width=0.25",
        "--set",
        "max_train_samples=256",
        "--device",
        "cpu",
        "--out",
        "m.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "m.json").read_text())
    for key in (
        "test_acc",
        "train_time_s",
        "params_trained",
        "params_deployed",
        "peak_mem_mb",
        "history",
    ):
        assert key in out
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert {"train_loss", "val_loss", "val_acc", "epoch_time_s", "peak_mem_mb"} <= set(
        out["history"][0]
    )
    assert "test_acc" in result.stdout  # the summary table
    # the plan: standard's epochs are the FLOPs unit, so 2 standard epochs of FLOPs are 2 epochs
    assert (out["stage_epochs"], out["epochs_run"], out["compute_epochs"]) == ([2], 2, 2.0)
    assert out["flops"] > 0 and [h["compute_epochs"] for h in out["history"]] == [1.0, 2.0]
    assert "budget: 2 standard epochs of FLOPs; epochs per stage: 2" in result.stdout
    assert "= 2.00 standard epochs" in result.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("trials")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final/test_acc"] == out["test_acc"]
    assert run.data.params["model"] == "seed_cnn" and run.data.tags["mlflow.source.git.commit"]
    assert run.data.params["budget_unit"] == "flops"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [
        1,
        2,
    ]  # a series, no final
    assert run.inputs.dataset_inputs[0].dataset.name == "digits"
    assert (
        len(client.get_metric_history(run.info.run_id, "system/process_memory_rss_megabytes")) >= 2
    )
    assert "weights.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
