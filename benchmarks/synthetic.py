"""CIFAR-size synthetic data built in memory, so a benchmark needs no files and no download."""

from __future__ import annotations

import torch

from trainables.data import CIFAR_MEAN, CIFAR_STD, DataSplits, synthetic_images


def synthetic_splits(
    n_train: int, n_eval: int = 64, num_classes: int = 10, seed: int = 0
) -> DataSplits:
    """DataSplits of random CIFAR-shaped images (CIFAR normalisation, flips on) for timing and
    memory runs."""
    generator = torch.Generator().manual_seed(seed)
    train = synthetic_images(n_train, num_classes, generator)
    val = synthetic_images(n_eval, num_classes, generator)
    test = synthetic_images(n_eval, num_classes, generator)
    return DataSplits("synthetic", train, val, test, num_classes, CIFAR_MEAN, CIFAR_STD, flip=True)
