"""Peak memory of one workload, each in a process of its own (CPU).

A fresh process per measurement keeps one method's RSS high-water mark, allocator cache and
library buffers out of the next one's number. The processes are forked from a fork server
that has imported torch but never run it, so each starts clean without paying the imports.
Two measures come back:
- `rss_mb`: process peak RSS above the baseline taken after the data is built (coarse: pages,
  allocator cache, oneDNN scratch), as fit reports on CPU;
- `alloc_mb`: exact peak of bytes held by tensors (model, grads, optimiser state,
  activations, temporaries), from the allocator trace of a second, identical run
  (deterministic, so one traced run per workload is enough);
- `flops_per_img`: floating-point operations per image and stage (torch's FlopCounterMode), a time
  measure that
  other load on a shared machine cannot disturb.
"""

from __future__ import annotations

import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from benchmarks.workload import Workload, run_workload


def measure_memory(work: Workload, exact: bool = True) -> dict[str, Any]:
    """RSS run first (nothing else has trained in this process yet); with `exact`, the
    allocator-traced run and the FLOP count per image and stage (`flops_per_img`), both
    deterministic."""
    rss_runs = run_workload(work)
    result: dict[str, Any] = {
        "rss_mb": max(r.peak_mem_mb for r in rss_runs),
        "rss_stage_mb": [r.peak_mem_mb for r in rss_runs],
    }
    if exact:
        gc.collect()
        alloc_runs = run_workload(work, trace=True)
        result.update(
            alloc_mb=max(r.alloc_mb for r in alloc_runs),
            alloc_stage_mb=[r.alloc_mb for r in alloc_runs],
        )
        result["flops_per_img"] = [r.flops / r.images for r in run_workload(work, count_flops=True)]
    return result


class IsolatedMemory:
    """Context manager: `measure(work)` runs `measure_memory(work)` in a new child process
    (`threads` torch threads)."""

    def __init__(self, threads: int, timeout_s: float = 600):
        self.threads = threads
        self.timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> IsolatedMemory:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["benchmarks.memory_probe"])
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=context,
            max_tasks_per_child=1,
            initializer=torch.set_num_threads,
            initargs=(self.threads,),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def measure(self, work: Workload, exact: bool = True) -> dict[str, Any]:
        if self._pool is None:
            raise RuntimeError("IsolatedMemory.measure() called outside its `with` block")
        return self._pool.submit(measure_memory, work, exact).result(timeout=self.timeout_s)
