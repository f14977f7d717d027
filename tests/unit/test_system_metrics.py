"""System metrics of a trial: MLflow's names, read without importing MLflow in the trial process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

from study.system_metrics import SYSTEM_SAMPLES_KEY, SystemSampler

ROOT = Path(__file__).resolve().parents[2]
PROCESS_METRICS = {"process_cpu_utilization_percentage", "process_memory_rss_megabytes"}
TRIAL_PROCESS = """
import json, sys
import study.system_metrics, trainables.trainable  # what a sweep trial's process imports
sample = study.system_metrics.SystemSampler().drain()
print(json.dumps({"mlflow": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"),
                  "sample": sample}))
"""


def test_a_sample_has_the_names_of_mlflows_own_monitors():
    """The system-metrics tab reads MLflow's names: the sampler's are those MLflow's CPU, disk and
    network monitors collect, plus two for the trial's process."""
    mlflow_names: set[str] = set()
    for monitor in (CPUMonitor(), DiskMonitor(), NetworkMonitor()):
        monitor.collect_metrics()
        mlflow_names |= set(monitor.aggregate_metrics())
    [sample] = SystemSampler().drain()[SYSTEM_SAMPLES_KEY]
    assert set(sample["metrics"]) == mlflow_names | PROCESS_METRICS
    assert sample["metrics"]["process_memory_rss_megabytes"] > 10
    assert sample["metrics"]["network_receive_megabytes"] >= 0  # since the sampler started


def test_a_trial_process_samples_without_importing_mlflow():
    """Importing MLflow costs 1.0-1.7 CPU-s per trial process (docs/results.md); on a machine
    without a GPU nothing of it is loaded."""
    done = subprocess.run(
        [sys.executable, "-c", TRIAL_PROCESS],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["mlflow"] == []
    assert len(found["sample"][SYSTEM_SAMPLES_KEY]) == 1
