"""Data: digits and the real torchvision CIFAR path, splits, on-device batching."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import write_cifar
from trainables.data import Batcher, load_dataset
from trainables.errors import UserError


def test_digits_are_real_32x32_rgb_uint8(digits):
    assert digits.train.x.dtype == torch.uint8
    assert tuple(digits.train.x.shape[1:]) == (3, 32, 32)
    assert digits.num_classes == 10
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert set(digits.train.y.unique().tolist()) == set(range(10))
    assert not digits.flip


def test_splits_are_deterministic_and_disjoint():
    a, b = load_dataset("digits", val_fraction=0.2), load_dataset("digits", val_fraction=0.2)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.test.y, b.test.y)
    assert len(a.val) == round(0.2 * (len(a.train) + len(a.val)))
    rows = lambda s: {tuple(img.flatten().tolist()) for img in s.x}  # noqa: E731
    assert not rows(a.val) & rows(a.test)


def test_max_train_samples_caps_only_train():
    s = load_dataset("digits", max_train_samples=100)
    assert len(s.train) == 100 and len(s.val) > 100


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loads_through_torchvision(cifar_root: Path, name: str, classes: int):
    s = load_dataset(name, cifar_root, val_fraction=0.1, verify_checksums=False)
    assert s.num_classes == classes and s.flip
    assert tuple(s.train.x.shape[1:]) == (3, 32, 32) and s.train.x.dtype == torch.uint8
    assert len(s.test) == 20


def test_cifar_md5_check_stays_on_by_default(cifar_root: Path):
    with pytest.raises(UserError, match="md5"):
        load_dataset("cifar10", cifar_root)


def test_missing_cifar_dir_names_path_and_fix(tmp_path: Path):
    with pytest.raises(UserError) as err:
        load_dataset("cifar100", tmp_path / "nowhere")
    message = str(err.value)
    assert "cifar-100-python" in message and "download=True" in message and "nowhere" in message


def test_cifar_without_data_dir_is_an_error():
    with pytest.raises(ValueError, match="--data-dir"):
        load_dataset("cifar10", None)


def test_unknown_dataset_lists_valid():
    with pytest.raises(ValueError, match="digits, cifar10, cifar100"):
        load_dataset("mnist")


def test_cifar_helper_writes_loadable_files(tmp_path: Path):
    write_cifar(tmp_path, "cifar10", n_train=10, n_test=5)
    assert len(load_dataset("cifar10", tmp_path, verify_checksums=False).test) == 5


def test_augment_translates_and_flips_without_changing_content(tiny_cifar10):
    batcher = Batcher(tiny_cifar10)
    x = tiny_cifar10.train.x[:16]
    out = batcher.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert not torch.equal(out, x)  # 16 images: the chance that all draw shift 0 and no flip is nil
    # every output pixel is either zero padding or a pixel of the source image
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0}


def test_no_flip_for_digits(digits):
    batcher = Batcher(digits, crop_padding=0)
    x = digits.train.x[:32]
    assert torch.equal(batcher.augment(x, torch.Generator().manual_seed(0)), x)


def test_train_batches_cover_an_epoch_and_normalise(digits):
    batcher = Batcher(digits)
    batches = list(batcher.train_batches(digits.train, 100, torch.Generator().manual_seed(0), augment=False))
    assert len(batches) == len(digits.train) // 100
    x = torch.cat([b[0] for b in batches])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    labels = torch.cat([b[1] for b in batches])
    assert len(labels.unique()) == 10
