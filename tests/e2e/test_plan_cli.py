"""`python -m study sweep` whose plan exceeds budget.max_device_hours stops with one line and exit
2 after printing the plan, before any trial, experiment or MLflow store exists."""

from __future__ import annotations

from pathlib import Path

from test_user_errors import assert_one_line_exit_2, run_cli


def test_sweep_over_max_device_hours_stops_before_any_trial(tmp_path: Path):
    study_dir = tmp_path / "study"
    result = run_cli(
        "sweep",
        "--spec",
        "quick",
        "--study-dir",
        str(study_dir),
        "--set",
        "budget.max_device_hours=0.0001",
        cwd=tmp_path,
    )
    assert_one_line_exit_2(result, "budget.max_device_hours=0.0001", "core-hours")
    assert "plan 'quick'" in result.stdout and "total:" in result.stdout
    assert not (study_dir / "tune").exists()
    assert not (study_dir / "mlflow.db").exists()
    assert not (study_dir / "state").exists()
