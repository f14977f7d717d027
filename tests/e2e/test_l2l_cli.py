"""End to end: layer_to_layer through `python -m study trial`, and its accuracy against standard
on digits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.config import TrainConfig
from trainables.data import DataSplits
from trainables.training import fit

ROOT = Path(__file__).resolve().parents[2]


def test_trial_cli_writes_l2l_metrics(tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    cmd = [
        sys.executable,
        "-m",
        "study",
        "trial",
        "--method",
        "layer_to_layer",
        "--set",
        "split_ratio=0.4",
        "--set",
        "kd_alpha=0.5",
        "--epochs",
        "3",
        "--no-mlflow",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["split_schedule"] == [[0, 2, 1], [1, 3, 1], [2, 4, 1]]
    assert len(result["stage_peak_mem_mb"]) == 3 and all(m > 0 for m in result["stage_peak_mem_mb"])
    history = result["history"]
    assert [h["split"] for h in history] == [2, 3, 4]
    assert [h["stage"] for h in history] == [0, 1, 2]
    for h in history:
        assert 0.0 <= h["student_acc"] <= 1.0
        assert h["teacher_loss"] > 0 and h["student_loss"] > 0
    assert result["config"]["kd_alpha"] == 0.5


@pytest.mark.slow
def test_l2l_defaults_stay_within_3_points_of_standard_on_digits(digits: DataSplits) -> None:
    """The reference run's protocol (seed CNN, digits; docs/results.md) at 5 epochs, not 10 (half
    the time): L2L's defaults within 3 points of standard. Measured 2026-12-06 on the 2-core CPU
    VM: standard 0.944, layer_to_layer 0.953 (at width 0.5 and 10 epochs l2l fell 3.9 points
    behind)."""
    accuracy = {}
    for method in ("standard", "layer_to_layer"):
        config = TrainConfig(
            model="seed_cnn", method=method, dataset="digits", epochs=5, device="cpu"
        )
        accuracy[method] = fit(config, splits=digits)["test_acc"]
    assert accuracy["layer_to_layer"] >= 0.93, accuracy
    assert accuracy["layer_to_layer"] >= accuracy["standard"] - 0.03, accuracy
