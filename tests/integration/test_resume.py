"""An interrupted sweep (driver SIGKILLed mid-search) rerun with the same command finishes without
redoing trials, and its Optuna storage holds one trial per Tune trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
from study_helpers import metric_steps, mlflow_runs, tune_trial_ids

from study.optuna_storage import storage_url

REPO = Path(__file__).resolve().parents[2]
EPOCHS, TRIALS = 3, 3
SEARCH = "seed_cnn-standard-search"
SPEC = f"""
name = "resume"
dataset = "digits"
models = ["seed_cnn"]
methods = ["standard"]
[budget]
epochs = {EPOCHS}
max_trials = {TRIALS}
seeds = 0
grace_period = {EPOCHS}   # no early stopping: every trial runs all epochs
max_concurrent = 1        # one at a time: the kill lands while later trials are still to run
[search]
startup_trials = 2
[fixed]
width = 0.125
max_train_samples = 1000  # a few seconds a trial (300: all three could end in one state save)
"""


def reported(search_dir: Path) -> dict[str, list[dict]]:
    """trial id -> the results Tune logged for it (result.json lines)."""
    return {
        path.parent.name: [
            json.loads(line) for line in path.read_text().splitlines() if line.strip()
        ]
        for path in search_dir.glob("*/result.json")
    }


def terminated_in_saved_state(study_dir: Path) -> set[str]:
    """The trials that the experiment state on disk (what a resume starts from) records as
    finished."""
    try:
        return {
            t for t, status in tune_trial_ids(study_dir, SEARCH).items() if status == "TERMINATED"
        }
    except (OSError, ValueError, KeyError):  # not written yet, or being replaced
        return set()


def sweep(spec: Path, study_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [
        sys.executable,
        "-m",
        "study",
        "sweep",
        "--spec",
        str(spec),
        "--study-dir",
        str(study_dir),
    ]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_killed_sweep_resumes_without_redoing_trials(tmp_path: Path):
    spec, study_dir = tmp_path / "resume.toml", tmp_path / "study"
    spec.write_text(SPEC)
    search_dir = study_dir / "tune" / SEARCH
    driver = sweep(spec, study_dir)
    deadline = time.monotonic() + 180
    while (
        not terminated_in_saved_state(study_dir)
        and driver.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.3)
    assert driver.poll() is None, (
        f"the sweep ended before it could be interrupted:\n{driver.communicate()[0]}"
    )
    driver.send_signal(signal.SIGKILL)  # Ray's processes started by this driver exit with it
    driver.wait()
    finished = terminated_in_saved_state(study_dir)
    assert 1 <= len(finished) < TRIALS
    done_before = {
        trial_id: results
        for trial_id, results in reported(search_dir).items()
        if trial_id in finished
    }

    rerun = sweep(spec, study_dir)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output
    assert "resuming the interrupted experiment" in output

    trials = tune_trial_ids(study_dir, SEARCH)
    assert len(trials) == TRIALS and set(trials.values()) == {"TERMINATED"}, (trials, output)
    stored = optuna.load_study(study_name="seed_cnn/standard", storage=storage_url(study_dir))
    assert sorted(t.user_attrs["trial_id"] for t in stored.trials) == sorted(trials)  # one each
    assert {t.state.name for t in stored.trials} == {"COMPLETE"}
    runs = mlflow_runs(study_dir, "resume", "trial")
    search = [r for r in runs if r.data.tags["phase"] == "search"]
    assert sorted(r.data.tags["trial_id"] for r in search) == sorted(
        trials
    )  # one run per trial, none duplicated
    assert {r.info.status for r in runs} == {"FINISHED"}
    after = reported(search_dir)
    for trial_id, results in done_before.items():
        assert after[trial_id] == results  # nothing reported again: the trial was not rerun
        assert "train_time_s" in results[-1]["final"]  # the last report carries the final metrics
        assert "test_acc" not in results[-1]["final"]  # a search trial never scores the test set
        run = next(r for r in search if r.data.tags["trial_id"] == trial_id)
        assert metric_steps(study_dir, run, "epoch_time_s") == list(range(1, EPOCHS + 1))
