"""Exact CPU memory in use over time, from torch.profiler's allocator events (the CPU twin of CUDA's
max_memory_allocated).

The process RSS high-water mark counts whole pages, the allocator's cache and library buffers
(oneDNN scratch, thread pools); this trace counts only bytes that tensors hold, allocation by
allocation, so two methods' peaks compare exactly. Blocks allocated before `__enter__` are not
counted (their frees are not reported either), so enter before building the model to count it.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator

import torch
from torch.profiler import ProfilerActivity, profile, record_function

MB = 1024 * 1024
_MEMORY_EVENT = "[memory]"
_MARK_PREFIX = "bench::"


class AllocatorTrace:
    """Context manager recording every CPU tensor allocation and free; `peak_mb()` after exit."""

    def __init__(self) -> None:
        self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._times: list[int] = []
        self._levels: list[int] = []
        self._windows: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> AllocatorTrace:
        self._profiler.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._profiler.__exit__(*exc)
        if exc[0] is None:
            self._parse()

    @contextlib.contextmanager
    def mark(self, name: str) -> Iterator[None]:
        """A named window whose peak `peak_mb(name)` reports."""
        with record_function(_MARK_PREFIX + name):
            yield

    def _parse(self) -> None:
        events = self._profiler.profiler.kineto_results.events()
        cpu = torch.autograd.DeviceType.CPU
        changes = sorted(
            (e.start_ns(), e.nbytes())
            for e in events
            if e.name() == _MEMORY_EVENT and e.device_type() == cpu
        )
        level = 0
        for time_ns, nbytes in changes:
            level += nbytes
            self._times.append(time_ns)
            self._levels.append(level)
        for e in events:
            if e.name().startswith(_MARK_PREFIX):
                self._windows[e.name()[len(_MARK_PREFIX) :]] = (
                    e.start_ns(),
                    e.start_ns() + e.duration_ns(),
                )

    def peak_mb(self, name: str | None = None) -> float:
        """Peak bytes in use (MB) since `__enter__`, over the whole trace or within the window
        `name`."""
        if name is None:
            return max(self._levels, default=0) / MB
        if name not in self._windows:
            raise KeyError(
                f"no window {name!r} in this trace; windows: {', '.join(self._windows) or '(none)'}"
            )
        start, end = self._windows[name]
        first, last = bisect.bisect_left(self._times, start), bisect.bisect_right(self._times, end)
        level_at_start = self._levels[first - 1] if first > 0 else 0
        return max([level_at_start, *self._levels[first:last]]) / MB
