"""A phase fails the study only when none of its trials finished; a diverged one did not finish."""

from __future__ import annotations

import pytest
from ray.tune import Result

from study.phase_check import StudyFailed, check_phase, last_line, phase_failure
from trainables.trainable import DIVERGED_KEY

DIVERGED = "DivergedError: train_loss is nan at epoch 1"
TRACEBACK = (
    'Traceback (most recent call last):\n  File "x.py", line 1, in f\nValueError: bad width\n\n'
)


def result(trial_id: str, error: Exception | None = None, **metrics: object) -> Result:
    """A Tune result as a ResultGrid holds it (Tune adds the trial's config to its metrics)."""
    config = {"model": "seed_cnn", "method": "standard"}
    return Result(
        metrics={"config": config, **metrics},
        checkpoint=None,
        error=error,
        path=f"/study/tune/seed_cnn-standard-search/{trial_id}",
    )


def test_a_phase_with_one_finished_trial_has_no_failure():
    failed = result("a1", RuntimeError(TRACEBACK))
    assert phase_failure([failed, result("b2", val_acc=0.9)]) is None


def test_a_phase_without_a_finished_trial_names_its_first_failure_and_reason():
    diverged = result("a1", RuntimeError(TRACEBACK), **{DIVERGED_KEY: DIVERGED})
    crashed = result("b2", RuntimeError(TRACEBACK))
    assert phase_failure([diverged, crashed]) == f"seed_cnn/standard trial a1: {DIVERGED}"
    assert phase_failure([crashed, diverged]) == "seed_cnn/standard trial b2: ValueError: bad width"
    assert phase_failure([]) == "no trial ran"


def test_a_diverged_run_that_did_not_error_has_not_finished():
    """A diverged seeds-phase run may end without an error (a result for the verdict), but a phase
    of such runs only still has nothing finished."""
    assert phase_failure([result("c3", **{DIVERGED_KEY: DIVERGED})]) == (
        f"seed_cnn/standard trial c3: {DIVERGED}"
    )


def test_check_phase_raises_one_line_naming_the_phase():
    check_phase("seeds", None)
    with pytest.raises(StudyFailed) as raised:
        check_phase("equal time", "seed_cnn/greedy trial d4: boom")
    assert str(raised.value) == (
        "the equal time phase ended with no finished trial; "
        "first failure: seed_cnn/greedy trial d4: boom"
    )


def test_an_error_line_names_the_exception_without_its_module_path():
    """A worker group's error can reach Tune before the divergence its worker reported: its
    traceback's last line then words the divergence as the trial does, and the report counts the
    run as diverged (study/report/frames.py reads the prefix)."""
    worker_group = (
        "ray.train.WorkerGroupError: Training failed due to worker errors:\n"
        "[Rank 0 Error Snippet]:\nTraceback (most recent call last):\n"
        f"trainables.training.{DIVERGED} (seed_cnn/standard)\n"
    )
    assert last_line(worker_group) == f"{DIVERGED} (seed_cnn/standard)"
    assert last_line(TRACEBACK) == "ValueError: bad width"
    assert last_line("lost: ray.exceptions.ActorDiedError (node gone)") == (
        "lost: ray.exceptions.ActorDiedError (node gone)"
    )
    assert last_line("spec.toml: no such file") == "spec.toml: no such file"
    assert last_line(" \n") == "unknown error"
