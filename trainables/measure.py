"""Measurement: wall time with CUDA sync, peak memory per phase, throughput, parameter counts.

Peak memory (`peak_mem_mb`) is the peak during a phase minus the memory in use when the
phase's baseline was taken (after the data set is loaded, before the model is built), so
data held on the device does not dilute differences between methods.
- CUDA: `torch.cuda.max_memory_allocated`, reset per phase (exact, allocator-level).
- CPU: the process high-water mark `VmHWM`, reset per phase by writing 5 to
  /proc/self/clear_refs after `malloc_trim(0)` hands freed heap back to the OS. This is
  coarser: it counts whole pages and whatever the allocator keeps resident, so compare
  CPU numbers between methods measured in separate processes or phases of similar size.
  The exact count `make bench` uses (torch.profiler allocator events) is not used in trials:
  over whole quick-study trials it cost 23-36% more CPU time (2026-11-26, 2-core VM), far
  above the 5% a trial can spend on measurement; the report labels CPU memory RSS instead.
`memory_source` and `describe_device` name what was measured where, for the report.
`MachineLoad` records how busy the machine was while a run trained (load average, stolen CPU time),
so the report can name the load of a run whose time stands out.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from trainables.errors import UserError

MB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_PROC_STAT = Path("/proc/stat")
_STEAL_FIELD = 8  # `cpuN user nice system idle iowait irq softirq steal ...` (proc(5))


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cuda' without a GPU is an error, not a silent
    fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device='cuda' requested but torch.cuda.is_available() is False; use --device cpu or "
            "auto"
        )
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Wall-clock seconds between start() and stop(), synchronising CUDA at both ends."""

    def __init__(self, device: torch.device):
        self.device = device
        self._start = 0.0

    def start(self) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        return time.perf_counter() - self._start


def _read_status_kb(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not found in {_STATUS}")


def _malloc_trim() -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name).malloc_trim(0)


class PeakMemory:
    """Peak memory of a phase in MB above a baseline taken once with `set_baseline()`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu_supported = _STATUS.exists() and _CLEAR_REFS.exists()
        self.baseline_mb = 0.0
        self.set_baseline()

    def current_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / MB
        return _read_status_kb("VmRSS") / 1024 if self.cpu_supported else 0.0

    def set_baseline(self) -> None:
        self.reset()
        self.baseline_mb = self.current_mb()

    def reset(self) -> None:
        """Start a new phase: the next `peak_mb()` covers only what happens after this call.

        No gc.collect() here: tensors are freed by reference counting, and a full collection
        costs ~0.5 s per epoch once torch, Ray and MLflow are imported (profiled).
        """
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.cpu_supported:
            _malloc_trim()
            try:
                _CLEAR_REFS.write_text("5")
            except OSError:
                self.cpu_supported = False

    @property
    def source(self) -> str:
        """How `peak_mb` is measured: `cuda_max_memory_allocated` (exact tensor bytes), `cpu_rss`
        or `none`."""
        if self.device.type == "cuda":
            return "cuda_max_memory_allocated"
        return "cpu_rss" if self.cpu_supported else "none"

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / MB
        elif self.cpu_supported:
            peak = _read_status_kb("VmHWM") / 1024
        else:
            return float("nan")
        return max(0.0, peak - self.baseline_mb)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def trainable_sizes(modules: dict[str, nn.Module]) -> dict[str, int]:
    """`prefix.name` -> numel of every parameter that requires grad: collected at each stage's
    start, their union is what a run trained (params_trained), heads that a later stage drops
    included."""
    return {
        f"{prefix}.{name}": p.numel()
        for prefix, module in modules.items()
        for name, p in module.named_parameters()
        if p.requires_grad
    }


def describe_device(device: torch.device) -> str:
    """The hardware that trained: the GPU's name, else the CPU model and the cores this process
    may run on."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {cpu_model()} ({cores} cores)"


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows of it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class MachineLoad:
    """The machine's load over a run's training: 1-minute load average at its start and end and, on
    Linux, the CPU time the hypervisor stole from the cores this process may run on (/proc/stat)."""

    def __init__(self) -> None:
        self.load_start = _load_average()
        self.cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self.steal_start = _steal_ticks(self.cores)

    def finish(self) -> dict[str, float]:
        """`load_avg_start`, `load_avg_end` and `steal_s` (NaN where the platform counts none)."""
        steal_end = _steal_ticks(self.cores)
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        return {
            "load_avg_start": self.load_start,
            "load_avg_end": _load_average(),
            "steal_s": (steal_end - self.steal_start) / ticks,
        }


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _steal_ticks(cores: set[int]) -> float:
    """Clock ticks stolen so far from `cores` (per-CPU lines of /proc/stat); NaN without them."""
    if not cores or not _PROC_STAT.exists():
        return float("nan")
    total = 0
    for line in _PROC_STAT.read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            total += int(fields[_STEAL_FIELD - 1]) if len(fields) >= _STEAL_FIELD else 0
    return float(total)
