"""Measurement: the CPU peak-memory reset really resets, timers time, devices resolve honestly."""

from __future__ import annotations

import time

import pytest
import torch

from trainables.measure import PeakMemory, Timer, count_params, resolve_device


def test_cpu_peak_memory_sees_an_allocation_and_resets():
    memory = PeakMemory(torch.device("cpu"))
    if not memory.cpu_supported:
        pytest.skip("no /proc/self/clear_refs on this system")
    memory.reset()
    big = torch.ones(200 * 1024 * 1024 // 4)  # 200 MB, touched
    del big
    first = memory.peak_mb()
    memory.reset()
    small = torch.ones(20 * 1024 * 1024 // 4)  # 20 MB
    second = memory.peak_mb()
    del small
    assert first > 150
    assert second < first / 2  # the 200 MB peak did not carry over into the new phase


def test_timer_measures_wall_time():
    timer = Timer(torch.device("cpu"))
    timer.start()
    time.sleep(0.05)
    assert 0.04 < timer.stop() < 1.0


def test_cuda_without_gpu_is_an_error_not_a_fallback():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_count_params_trainable_only():
    layer = torch.nn.Linear(4, 3)
    layer.bias.requires_grad_(False)
    assert count_params(layer) == 15 and count_params(layer, trainable_only=True) == 12
