"""Per-trial requests against a cluster's nodes: what can never be placed, and how many trials
fit at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from study.capacity import (
    TrialRequest,
    auto_concurrency,
    check_data_on_driver,
    check_placeable,
    search_limit,
)
from study.spec import spec_from_dict

CPU_ONLY = [{"CPU": 2.0, "GPU": 0.0}]


def tiny(**values):
    """A one-arm spec dict (digits, seed_cnn/standard) with `values` on top."""
    return {"name": "t", "models": ["seed_cnn"], "methods": ["standard"], **values}


TWO_GPU_NODES = [{"CPU": 4.0, "GPU": 0.0}, {"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}]


def test_gpu_request_on_a_cpu_only_cluster_names_both():
    with pytest.raises(
        ValueError,
        match=r"2 CPU, 0.25 GPU per trial can never be placed.*no node has GPU.*"
        r"node 1: 2 CPU, 0 GPU",
    ):
        check_placeable(TrialRequest(cpu=2, gpu=0.25), CPU_ONLY)


def test_a_trial_larger_than_every_node_is_refused_even_if_the_cluster_total_would_do():
    with pytest.raises(ValueError, match="no node is large enough"):
        check_placeable(TrialRequest(cpu=10, gpu=0), TWO_GPU_NODES)
    check_placeable(TrialRequest(cpu=8, gpu=1), TWO_GPU_NODES)  # fits the GPU nodes: no error


def test_workers_split_the_trial_over_nodes():
    check_placeable(
        TrialRequest(cpu=10, gpu=2, workers=2), TWO_GPU_NODES
    )  # 5 CPU + 1 GPU per worker
    assert TrialRequest(cpu=1, gpu=0, workers=2).worker_bundle == {"CPU": 0.5, "GPU": 0.0}


def test_auto_concurrency_packs_per_node_and_counts_the_scarcest_resource():
    assert auto_concurrency(TrialRequest(cpu=1, gpu=0), CPU_ONLY) == 2
    assert (
        auto_concurrency(TrialRequest(cpu=2, gpu=0.25), TWO_GPU_NODES) == 8
    )  # 4 per GPU, 2 GPU nodes
    assert (
        auto_concurrency(TrialRequest(cpu=3, gpu=0), [{"CPU": 4.0, "GPU": 0.0}] * 2) == 2
    )  # not 8 // 3
    # 2 workers of 0.5 CPU + the driver's share: one such trial at a time on 2 CPUs
    assert auto_concurrency(TrialRequest(cpu=1, gpu=0, workers=2), CPU_ONLY) == 1


def test_search_limit_leaves_half_the_trials_to_learn_from_finished_ones():
    spec = spec_from_dict(tiny(budget={"max_trials": 24}, search={"startup_trials": 8}))
    assert search_limit(spec) == 12
    spec = spec_from_dict(tiny(budget={"max_trials": 6}, search={"startup_trials": 5}))
    assert search_limit(spec) == 5


def test_missing_cifar_folder_on_the_driver(tmp_path):
    spec = spec_from_dict(tiny(dataset="cifar100", fixed={"data_dir": str(tmp_path / "nowhere")}))
    with pytest.raises(
        ValueError, match=r"nowhere/cifar-100-python does not exist on this machine"
    ):
        check_data_on_driver(spec)
    check_data_on_driver(spec_from_dict(tiny()))  # digits needs no folder


def test_sizing_a_request_imports_no_ray():
    """The worker group's driver bundle comes from trainables.distributed, not Ray's trainable."""
    code = (
        "import sys; from study.capacity import TrialRequest; "
        "assert TrialRequest(1.0, 0.0, workers=2).total['CPU'] > 1; print('ray' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.stdout.strip() == "False"
