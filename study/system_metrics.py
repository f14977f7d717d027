"""System metrics sampled inside each trial's own process and handed to the sweep driver with Tune's
results.

The samples carry MLflow's system-metric names (CPU and memory, disk, network; GPU when NVML is
there) plus two for the trial's process. The driver logs them under `system/` like MLflow's
SystemMetricsMonitor does, so they fill the run's system-metrics tab, while the trial never writes
to the store itself (several processes writing one sqlite store can fail with "database is
locked").

CPU, memory, disk and network are read with psutil here, as MLflow's own monitors read them:
importing those monitors imports all of MLflow, 1.0-1.7 CPU-seconds in every trial process
(measured 2026-12-06 on the 2-core CPU machine), for a few psutil calls. GPUs are sampled by
MLflow's GPUMonitor, imported only where CUDA sees a GPU.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psutil

log = logging.getLogger(__name__)

SYSTEM_SAMPLES_KEY = "system_samples"  # result key: the samples taken since the previous report
SAMPLING_INTERVAL_ENV = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"  # MLflow's own setting
DEFAULT_INTERVAL_S = 5.0  # between background samples; SAMPLING_INTERVAL_ENV overrides it
FIRST_SAMPLE_S = (
    0.2  # the first sample, early in the trial (CPU use is averaged since the sampler started)
)
MB = 1e6


def gpu_monitor() -> Any | None:
    """MLflow's GPU sampler where CUDA sees a GPU and NVML loads; None elsewhere."""
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        return GPUMonitor()
    except (ImportError, RuntimeError) as err:  # no nvidia-ml-py, or NVML failed
        log.debug("no GPU system metrics: %s", err)
        return None


class SystemSampler:
    """Samples at FIRST_SAMPLE_S, then every interval in a thread, and once more at every
    `drain()`."""

    def __init__(self, interval_s: float | None = None):
        self.interval_s = interval_s or float(
            os.environ.get(SAMPLING_INTERVAL_ENV) or DEFAULT_INTERVAL_S
        )
        # start psutil's CPU intervals (the first call of each only starts it)
        psutil.cpu_percent()
        self.process = psutil.Process()
        self.process.cpu_percent()
        start = psutil.net_io_counters()
        self._net_start_mb = (start.bytes_recv / MB, start.bytes_sent / MB)
        self.gpu = gpu_monitor()
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

    def read(self) -> dict[str, float]:
        """One reading, under MLflow's metric names (network: megabytes since the sampler
        started)."""
        memory, disk, net = (
            psutil.virtual_memory(),
            psutil.disk_usage(os.sep),
            psutil.net_io_counters(),
        )
        values = {
            "cpu_utilization_percentage": psutil.cpu_percent(),
            "system_memory_usage_megabytes": memory.used / MB,
            "system_memory_usage_percentage": memory.used / memory.total * 100,
            "disk_usage_percentage": disk.percent,
            "disk_usage_megabytes": disk.used / MB,
            "disk_available_megabytes": disk.free / MB,
            "network_receive_megabytes": net.bytes_recv / MB - self._net_start_mb[0],
            "network_transmit_megabytes": net.bytes_sent / MB - self._net_start_mb[1],
            # this process alone (the system-wide values also see other trials)
            "process_cpu_utilization_percentage": self.process.cpu_percent(),
            "process_memory_rss_megabytes": self.process.memory_info().rss / MB,
        }
        if self.gpu is not None:
            self.gpu.collect_metrics()
            values.update(self.gpu.aggregate_metrics())
            self.gpu.clear_metrics()
        return {name: round(value, 1) for name, value in values.items()}

    def sample(self) -> None:
        """One reading, timestamped, added to the pending ones."""
        with self._lock:
            self._pending.append({"timestamp_ms": int(time.time() * 1000), "metrics": self.read()})

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
