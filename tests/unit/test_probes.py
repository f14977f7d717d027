"""Per-block linear probes: one accuracy per block, features from one pass, separability after
training."""

from __future__ import annotations

import torch

from trainables.data import Batcher, DataSplits, ImageSet
from trainables.models import build_model
from trainables.probes import block_features, probe_accuracies
from trainables.training import fit


def test_one_accuracy_per_block_in_unit_interval(tiny_cifar10):
    torch.manual_seed(0)
    model = build_model("vgg11_bn", tiny_cifar10.num_classes, 0.25)
    accuracies = probe_accuracies(model, tiny_cifar10, Batcher(tiny_cifar10))
    assert len(accuracies) == model.num_blocks == 8
    assert all(0.0 <= a <= 1.0 for a in accuracies)


def test_features_are_the_pooled_block_outputs(digits: DataSplits):
    torch.manual_seed(0)
    model = build_model("seed_cnn", 10, 0.25).train()
    batcher = Batcher(digits)
    data = ImageSet(digits.val.x[:40], digits.val.y[:40])
    features, labels = block_features(model, data, batcher)
    assert model.training  # restored afterwards
    assert [f.shape for f in features] == [(40, 8), (40, 8), (40, 16), (40, 16), (40, 128)]
    assert (labels == data.y.numpy()).all()
    model.eval()
    with torch.no_grad():
        x = batcher.normalise(data.x)
        block2 = model.features(x, 0, 3).mean(dim=(2, 3))
        fc = model.features(x, 0, 5)
    assert torch.allclose(torch.from_numpy(features[2]), block2, atol=1e-5)
    assert torch.allclose(torch.from_numpy(features[4]), fc, atol=1e-5)


def test_trained_seed_cnn_last_block_probes_far_above_chance(make_config, digits):
    small = DataSplits(
        digits.name,
        ImageSet(digits.train.x[:256], digits.train.y[:256]),
        digits.val,
        digits.test,
        digits.num_classes,
        digits.mean,
        digits.std,
        digits.flip,
    )
    final = fit(make_config(epochs=2, batch_size=32, probes=True), splits=small)
    probes = final["probe_acc"]
    assert len(probes) == 5
    assert probes[-1] >= 0.8  # chance is 0.1
