"""Smoke test of `make bench`'s code path: a tiny run writes ratios for every method; the CPU memory count is exact."""
from __future__ import annotations

import json
import math

import torch

from benchmarks.allocator import AllocatorTrace
from benchmarks.run import main

MB = 1024 * 1024


def test_allocator_trace_counts_tensor_bytes_exactly():
    with AllocatorTrace() as trace:
        with trace.mark("two"):
            a = torch.ones(2 * MB // 4)  # 2 MB
            b = a * 2  # +2 MB: peak 4 MB
            del b
        with trace.mark("one"):
            c = torch.ones(MB // 4)  # 2 MB held + 1 MB
        del a, c
    assert abs(trace.peak_mb() - 4.0) < 0.01
    assert abs(trace.peak_mb("two") - 4.0) < 0.01
    assert abs(trace.peak_mb("one") - 3.0) < 0.01  # the 2 MB still held when the window opened count too


def test_tiny_bench_writes_ratios_for_every_method(tmp_path, capsys):
    argv = ["--models", "seed_cnn:0.125", "--batch-size", "8", "--batches", "1", "--warmup", "1", "--repeats", "1",
            "--device", "cpu", "--no-harness", "--out", str(tmp_path)]
    assert main(argv) == 0
    [json_path] = tmp_path.glob("*.json")
    results = json.loads(json_path.read_text())
    model = results["models"]["seed_cnn"]
    for method in ("layer_to_layer", "greedy"):
        for kind in ("time", "mem"):
            value = model["ratios"][method][kind]
            assert math.isfinite(value) and value > 0, (method, kind, value)
    assert model["ratios"]["layer_to_layer"]["flops"] >= 1.0  # student + teacher + aux head: all of standard's work
    assert model["ratios"]["greedy"]["flops"] < 1.0  # one block trained at a time, earlier ones forward only
    greedy = model["methods"]["greedy"]
    assert len(greedy["stages"]) == len(greedy["stage_mem_mb"]) == 5  # seed_cnn: one greedy stage per block
    assert greedy["mem_mb"] == max(greedy["stage_mem_mb"])  # the honest number: the worst block
    assert model["methods"]["layer_to_layer"]["stages"][0]["split"] == 3  # round(0.5 * 5), half up
    assert "not measured" in results["harness"]["note"]
    assert json_path.with_suffix(".md").read_text() in capsys.readouterr().out
