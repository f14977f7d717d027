"""System metrics sampled inside each trial's own process and handed to the sweep driver with Tune's
results.

The samplers are MLflow's own (CPU and memory, disk, network, GPU when NVML is there) plus one for
the trial's process. The driver logs them under `system/` like MLflow's SystemMetricsMonitor does,
so they fill the run's system-metrics tab, while the trial never writes to the store itself
(several processes writing one sqlite store can fail with "database is locked").
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psutil
from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor
from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

log = logging.getLogger(__name__)

SYSTEM_SAMPLES_KEY = "system_samples"  # result key: the samples taken since the previous report
DEFAULT_INTERVAL_S = (
    5.0  # between background samples; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it
)
FIRST_SAMPLE_S = (
    0.2  # the first sample, early in the trial (CPU use is averaged since the sampler started)
)


class ProcessMonitor(BaseMetricsMonitor):
    """CPU use and resident memory of this process (the system-wide monitors also see other
    trials)."""

    def __init__(self) -> None:
        super().__init__()
        self.process = psutil.Process()
        self.process.cpu_percent()  # the first call only starts psutil's interval

    def collect_metrics(self) -> None:
        self._metrics["process_cpu_utilization_percentage"].append(self.process.cpu_percent())
        self._metrics["process_memory_rss_megabytes"].append(self.process.memory_info().rss / 1e6)

    def aggregate_metrics(self) -> dict[str, float]:
        return {k: round(sum(v) / len(v), 1) for k, v in self._metrics.items()}


class SystemSampler:
    """Samples at FIRST_SAMPLE_S, then every interval in a thread, and once more at every
    `drain()`."""

    def __init__(self, interval_s: float | None = None):
        self.interval_s = (
            interval_s or MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() or DEFAULT_INTERVAL_S
        )
        # start psutil's system-wide CPU interval, as ProcessMonitor does for the process
        psutil.cpu_percent()
        self.monitors: list[BaseMetricsMonitor] = [
            CPUMonitor(),
            DiskMonitor(),
            NetworkMonitor(),
            ProcessMonitor(),
        ]
        try:
            self.monitors.append(GPUMonitor())
        except (
            ImportError,
            RuntimeError,
        ) as err:  # no nvidia-ml-py or no NVIDIA GPU: CPU metrics only
            log.debug("no GPU system metrics: %s", err)
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="SystemSampler", daemon=True)

    def __enter__(self) -> SystemSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """One sample of every monitor, timestamped, added to the pending ones."""
        with self._lock:
            for monitor in self.monitors:
                monitor.collect_metrics()
            values: dict[str, float] = {}
            for monitor in self.monitors:
                values.update(monitor.aggregate_metrics())
                monitor.clear_metrics()
            self._pending.append({"timestamp_ms": int(time.time() * 1000), "metrics": values})

    def drain(self) -> dict[str, Any]:
        """A fresh sample plus those taken since the last drain, as the result entry the driver
        logs."""
        self.sample()
        with self._lock:
            samples, self._pending = self._pending, []
        return {SYSTEM_SAMPLES_KEY: samples}

    def _loop(self) -> None:
        wait = FIRST_SAMPLE_S
        while not self._stop.wait(wait):
            self.sample()
            wait = self.interval_s


def sampled_trial(config: dict[str, Any]) -> None:
    """The sweep's Tune trainable: `train_trial` with system metrics sampled in the trial's
    process."""
    from trainables.trainable import (
        train_trial,
    )  # Ray: imported in trial processes, not by `study trial`

    with SystemSampler() as sampler:
        train_trial(config, extra_results=sampler.drain)
