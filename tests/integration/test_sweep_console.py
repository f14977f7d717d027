"""`python -m study sweep` as a user runs it: data-parallel trials finish, the console shows one
line per trial, and a study whose every trial fails exits 1 with one line (tracebacks: its log)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from study_helpers import mlflow_runs

from study.sweep_log import LOG_FILE

REPO = Path(__file__).resolve().parents[2]
SPEC = """
name = "{name}"
dataset = "digits"
models = ["seed_cnn"]
methods = ["standard"]

[budget]
epochs = 2
max_trials = {trials}
seeds = {seeds}
max_concurrent = 1
max_failures = 0

[resources]
cpu = 1
workers = {workers}

[fixed]
width = 0.125
max_train_samples = 200
lr = {lr}
"""
DIVERGED = "DivergedError: train_loss is nan at epoch 1"
# what Ray Train and the workers of a worker group printed for every report and failure
CHATTER = ("Reporting training result", "epoch 1 {", "(TrainController", "(RayTrainWorker")


def sweep(tmp_path: Path, name: str, workers: int, trials: int, seeds: int, lr: float):
    spec = tmp_path / f"{name}.toml"
    spec.write_text(SPEC.format(name=name, workers=workers, trials=trials, seeds=seeds, lr=lr))
    return subprocess.run(
        [sys.executable, "-m", "study", "sweep", "--spec", str(spec), "--study-dir", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1700,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def trial_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if re.search(r": \d+/\d+ .*trial \w+: ", line)]


@pytest.mark.timeout(1800)  # worker groups start slowly on a loaded 2-core machine
def test_worker_group_sweep_finishes_with_one_line_per_trial(tmp_path: Path):
    """2 search trials and 1 seeds run, each 2 data-parallel workers: all finish, MLflow records 2
    workers, and the console has one line per trial and none of Ray Train's or the workers'. (Two
    search trials one after the other: the second starts while the first's group shuts down.)"""
    result = sweep(tmp_path, "workers", workers=2, trials=2, seeds=1, lr=1e-3)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = mlflow_runs(tmp_path, "workers", "trial")
    assert sorted(r.data.tags["phase"] for r in runs) == ["search", "search", "seeds"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert [r.data.metrics["final/workers"] for r in runs] == [2, 2, 2]
    assert len(trial_lines(result.stdout)) == 3, result.stdout
    for text in CHATTER:
        assert text not in result.stdout + result.stderr, text


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_study_whose_every_trial_diverges_exits_1_with_one_line(tmp_path: Path, workers: int):
    """lr = 1e6 diverges in epoch 1: a console line for the (one) trial with the reason, then one
    error line naming the phase and the failure, exit status 1; Ray's tracebacks are in the log."""
    result = sweep(tmp_path, "diverging", workers=workers, trials=1, seeds=1, lr=1e6)
    assert result.returncode == 1, result.stderr[-3000:]
    lines = trial_lines(result.stdout)
    assert len(lines) == 1 and all(f"errored: {DIVERGED}" in line for line in lines), lines
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr[-3000:]
    assert re.fullmatch(
        r"error: study 'diverging' failed: the search phase ended with no finished trial; "
        rf"first failure: seed_cnn/standard trial \w+: {DIVERGED}.* \(log: .*sweep\.log\)",
        errors[0],
    ), errors[0]
    assert "Traceback" not in result.stderr and "Trials did not complete" not in result.stderr
    for text in CHATTER:
        assert text not in result.stdout + result.stderr, text
    log = (tmp_path / LOG_FILE).read_text()
    assert log.count("Trial task failed") == 1 and "Traceback" in log
    assert not (tmp_path / "state" / "seeds.json").exists()  # no seeds phase after a failed search
