"""Shared fixtures: tiny data sets in the real CIFAR pickle layout, digits splits, small configs."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainables.config import TrainConfig
from trainables.data import CIFAR_FOLDERS, DataSplits, load_dataset

# torch threads = the cores this test process has to itself: xdist runs PYTEST_XDIST_WORKER_COUNT
# test processes side by side, and more threads than cores leave OpenMP's idle threads spinning on
# cores that another process needs (two such files side by side on 2 cores took 106 s with 2
# threads each, 56 s with 1). OMP_NUM_THREADS carries it to the processes the tests start; a trial
# on Ray still sets its own from its reservation.
TORCH_THREADS = max(
    1, len(os.sched_getaffinity(0)) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
)
os.environ["OMP_NUM_THREADS"] = str(TORCH_THREADS)
torch.set_num_threads(TORCH_THREADS)


def write_cifar(root: Path, name: str, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """Write `n_train`/`n_test` random images in torchvision's CIFAR-10/100 pickle layout under
    `root`."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR_FOLDERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def batch(n: int) -> dict[str, Any]:
        labels = rng.integers(0, classes, n).tolist()
        # class-dependent brightness so that a model can learn something from a few images
        base = (np.array(labels)[:, None] * (200 // classes)).astype(np.int64)
        data = np.clip(base + rng.integers(0, 56, (n, 3072)), 0, 255).astype(np.uint8)
        return {"data": data, label_key: labels, "coarse_labels": [c // 5 for c in labels]}

    if name == "cifar10":
        per = max(1, n_train // 5)
        for i in range(1, 6):
            _dump(folder / f"data_batch_{i}", batch(per))
        _dump(folder / "test_batch", batch(n_test))
        _dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    else:
        _dump(folder / "train", batch(n_train))
        _dump(folder / "test", batch(n_test))
        _dump(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
    return root


def _dump(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding tiny cifar-10-batches-py/ and cifar-100-python/ (random images, real
    layout)."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar(root, "cifar10")
    write_cifar(root, "cifar100", n_train=100)
    return root


@pytest.fixture(scope="session")
def tiny_cifar10(cifar_root: Path) -> DataSplits:
    return load_dataset("cifar10", cifar_root, verify_checksums=False)


@pytest.fixture(scope="session")
def digits() -> DataSplits:
    return load_dataset("digits")


@pytest.fixture
def make_config() -> Callable[..., TrainConfig]:
    """TrainConfig with CPU-friendly defaults for tests; keyword overrides go through
    `from_flat`."""

    def make(**overrides: Any) -> TrainConfig:
        flat: dict[str, Any] = dict(device="cpu", epochs=2, batch_size=32, width=0.25, seed=0)
        flat.update(overrides)
        return TrainConfig.from_flat(flat)

    return make
