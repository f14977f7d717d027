"""Smoke test of `make bench`'s code path: a tiny run writes ratios for every method; the CPU
memory count is exact."""

from __future__ import annotations

import json
import math

import torch

from benchmarks.allocator import AllocatorTrace
from benchmarks.run import main
from benchmarks.trial_efficiency import trial_efficiency, trial_targets
from study.provenance import git_commit
from trainables.measure import cpu_model

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
    assert (
        abs(trace.peak_mb("one") - 3.0) < 0.01
    )  # the 2 MB still held when the window opened count too


def test_tiny_bench_writes_ratios_for_every_method(tmp_path, capsys):
    argv = [
        "--models",
        "seed_cnn:0.125",
        "--batch-size",
        "8",
        "--batches",
        "1",
        "--warmup",
        "1",
        "--repeats",
        "1",
        "--device",
        "cpu",
        "--no-harness",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    [json_path] = tmp_path.glob("*.json")
    results = json.loads(json_path.read_text())
    model = results["models"]["seed_cnn"]
    heads = ("greedy:layercnn", "greedy:dgl", "greedy:pooled")  # a greedy row per auxiliary head
    assert set(model["ratios"]) == {"layer_to_layer", *heads}
    for method in ("layer_to_layer", *heads):
        for kind in ("time", "mem", "flops"):
            value = model["ratios"][method][kind]
            assert math.isfinite(value) and value > 0, (method, kind, value)
    assert (
        model["ratios"]["layer_to_layer"]["flops"] >= 1.0
    )  # student + teacher + aux head: all of standard's work
    flops = {head: model["methods"][head]["stage_gflop_per_img"] for head in heads}
    # the heads differ only where the block's map is large: stage 0 (32x32) is dearest with
    # layerCNN's convs at full resolution, then pooled to 8x8, then DGL's 1x1 convs at 8x8
    assert flops["greedy:layercnn"][0] > flops["greedy:pooled"][0] > flops["greedy:dgl"][0]
    for head in heads:
        greedy = model["methods"][head]
        assert (
            len(greedy["stages"]) == len(greedy["stage_mem_mb"]) == 5
        )  # seed_cnn: one greedy stage per block
        assert greedy["mem_mb"] == max(greedy["stage_mem_mb"])  # the honest number: the worst block
    assert model["methods"]["layer_to_layer"]["stages"][0]["split"] == 3  # round(0.5 * 5), half up
    assert "not measured" in results["harness"]["note"]
    assert json_path.with_suffix(".md").read_text() in capsys.readouterr().out
    machine = results["machine"]  # the helpers MLflow runs use too
    assert machine["git_commit"] == git_commit() and cpu_model() in machine["device"]


def test_trial_efficiency_compares_a_trial_with_the_benchmark_step_speed():
    trial = {
        "config": {
            "model": "resnet18",
            "method": "standard",
            "dataset": "synthetic",
            "batch_size": 256,
            "width": 1.0,
        },
        "history": [{"epoch_time_s": 5.0}, {"epoch_time_s": 2.0}, {"epoch_time_s": 2.0}],
        "train_time_s": 9.0,
        "wall_time_s": 12.0,
        "throughput_img_s": 27_000.0,
    }
    bench = {
        "models": {
            "resnet18": {
                "workload": {"batch_size": 256, "width": 1.0},
                "img_s": {"standard": 30_000.0},
            }
        }
    }
    entry = trial_efficiency(trial, command_wall_s=20.0, bench=bench)
    assert entry["one_time_s"] == 3.0  # first epoch's excess over the median later epoch
    assert entry["startup_s"] == 8.0
    assert entry["train_share"] == (9.0 - 3.0) / (12.0 - 3.0)
    assert entry["throughput_ratio"] == 0.9
    assert [c["met"] for c in trial_targets([entry])] == [True, False]  # 0.90 >= 0.90; 0.667 < 0.85
    bench["models"]["resnet18"]["workload"]["batch_size"] = (
        128  # not like for like: no ratio, a note says why
    )
    entry = trial_efficiency(trial, command_wall_s=20.0, bench=bench)
    assert math.isnan(entry["throughput_ratio"]) and "batch 128" in entry["note"]
