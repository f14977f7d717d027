"""Data sets as uint8 tensors on the training device, deterministic splits, on-device batching.

`digits` (scikit-learn's 8x8 digits, upsampled to 3x32x32) ships with the package and is the
default. `fashion_mnist` reads the official IDX files (Debian's `dataset-fashion-mnist`, see
trainables/fashion_mnist.py) and pads them to 3x32x32. `cifar10`/`cifar100` load through
torchvision from a local directory. Nothing is ever downloaded; a missing file is an error that
says how to get it. `synthetic` is seeded random CIFAR-size data for throughput runs.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainables.distributed import shard_slice
from trainables.errors import UserError

log = logging.getLogger(__name__)

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "synthetic")
# classes per data set, known before loading (trainables.compute counts FLOPs without data)
NUM_CLASSES = {
    "digits": 10,
    "fashion_mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "synthetic": 10,
}
SPLIT_SEED = 1234  # fixed: every trial of a study sees the same train/val/test split
DIGITS_TEST_FRACTION = 0.2
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
FASHION_MEAN = (
    0.2860,
) * 3  # the published constants of the 28x28 images (measured here: 0.286, 0.353)
FASHION_STD = (0.3530,) * 3
FASHION_PAD = 2  # 28 + 2 + 2 = 32, the models' input size
SYNTHETIC_SEED = 4321  # fixed: every trial sees the same synthetic images
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 50_000, 10_000  # CIFAR's sizes
SYNTHETIC_MEAN = (0.5,) * 3  # uniform bytes 0..255: mean 127.5/255, std sqrt((256**2 - 1) / 12)/255
SYNTHETIC_STD = (0.2898,) * 3
# training images before the validation split, known before loading (what a plan counts with);
# digits: what its test split leaves of 1,797
TRAIN_IMAGES = {
    "digits": 1438,
    "fashion_mnist": 60_000,
    "cifar10": 50_000,
    "cifar100": 50_000,
    "synthetic": SYNTHETIC_TRAIN,
}


@dataclass
class ImageSet:
    """Images as uint8 NCHW and int64 labels, on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.x.to(device), self.y.to(device))


@dataclass
class DataSplits:
    """Train/val/test sets plus what batching needs to normalise and augment them."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    flip: bool  # horizontal flips make sense for natural images, not for digits

    def to(self, device: torch.device) -> DataSplits:
        return DataSplits(
            self.name,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.num_classes,
            self.mean,
            self.std,
            self.flip,
        )


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    max_train_samples: int | None = None,
    verify_checksums: bool = True,
) -> DataSplits:
    """Load `name` on the CPU and split a validation set off its training set (fixed seed).

    The test set is always the data set's full test set. `verify_checksums=False` skips the CIFAR
    md5 check (small test files in CIFAR layout); Fashion-MNIST is always checked (its cache is
    keyed by content).
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    if name == "synthetic":
        return _synthetic(val_fraction, max_train_samples)
    if name == "digits":
        train, test, num_classes = _load_digits()
        mean, std, flip = _channel_stats(train.x), _channel_stats(train.x, std=True), False
    elif name == "fashion_mnist":
        train, test, num_classes = _load_fashion(data_dir)
        mean, std, flip = FASHION_MEAN, FASHION_STD, True
    else:
        train, test, num_classes = _load_cifar(name, data_dir, verify_checksums)
        mean, std, flip = CIFAR_MEAN, CIFAR_STD, True
    train, val = _split(train, val_fraction)
    if max_train_samples is not None:
        train = ImageSet(train.x[:max_train_samples], train.y[:max_train_samples])
    if (
        name == "fashion_mnist"
    ):  # after the subset: only the images kept are padded and copied to 3 channels
        train, val, test = (_pad_to_rgb32(s) for s in (train, val, test))
    return DataSplits(name, train, val, test, num_classes, mean, std, flip)


def train_size(name: str, val_fraction: float, max_train_samples: int | None) -> int:
    """How many training images `load_dataset` gives, without loading them."""
    total = TRAIN_IMAGES[name]
    if name != "synthetic":  # its validation set comes on top of its training set
        total -= val_count(total, val_fraction)
    return total if max_train_samples is None else min(total, max_train_samples)


def val_count(images: int, val_fraction: float) -> int:
    """The validation images split off `images` (at least one)."""
    return max(1, int(round(val_fraction * images)))


def describe_splits(splits: DataSplits, data_dir: str | Path | None) -> dict[str, Any]:
    """What identifies the data a run trained on: name, md5 of every split's arrays, split sizes,
    source."""
    digest = hashlib.md5()
    for part in (splits.train, splits.val, splits.test):
        for tensor in (part.x, part.y):
            digest.update(tensor.cpu().contiguous().numpy().tobytes())
    source = (
        str(Path(data_dir).expanduser().resolve())
        if data_dir
        else f"built-in loader of {splits.name!r}"
    )
    return {
        "name": splits.name,
        "digest": digest.hexdigest(),
        "source": source,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "image_shape": list(splits.train.x.shape[1:]),
        "num_classes": splits.num_classes,
    }


def _load_digits() -> tuple[ImageSet, ImageSet, int]:
    """scikit-learn's digits (1797 real 8x8 scans, values 0..16) as 3x32x32 uint8 images."""
    pixels, labels = _digits_file()
    images = torch.from_numpy(pixels.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    x = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(labels)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    test_idx, train_idx = order[:n_test], order[n_test:]
    return ImageSet(x[train_idx], y[train_idx]), ImageSet(x[test_idx], y[test_idx]), 10


def _digits_file() -> tuple[np.ndarray, np.ndarray]:
    """The (N, 8, 8) pixels and N labels of scikit-learn's `digits.csv.gz`, read as
    `sklearn.datasets.load_digits` reads it (the same arrays) without importing scikit-learn: that
    import costs about 1 s of CPU in every new trial process, reading the file 0.02 s."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the digits data set ships with scikit-learn, which is not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def _load_fashion(data_dir: str | Path | None) -> tuple[ImageSet, ImageSet, int]:
    """Fashion-MNIST's 60,000 + 10,000 images as 1x28x28 uint8 (see `_pad_to_rgb32`)."""
    from trainables.fashion_mnist import load_fashion_mnist

    (train_x, train_y), (test_x, test_y) = load_fashion_mnist(data_dir)
    return ImageSet(train_x.unsqueeze(1), train_y), ImageSet(test_x.unsqueeze(1), test_y), 10


def _pad_to_rgb32(images: ImageSet) -> ImageSet:
    """1x28x28 -> 3x32x32: a 2-pixel zero border (Fashion-MNIST's background is 0, so it only widens
    the background; no resampling blurs the pixels) and the grey channel repeated for the models'
    RGB stem."""
    p = FASHION_PAD
    x = F.pad(images.x, (p, p, p, p)).expand(-1, 3, -1, -1).contiguous()
    return ImageSet(x, images.y)


def _synthetic(val_fraction: float, max_train_samples: int | None) -> DataSplits:
    """Seeded random CIFAR-size images with random labels (for throughput, nothing to learn): 50,000
    train images, or `max_train_samples`; a validation set of `val_fraction` that size; a test set
    of 10,000 or fewer."""
    n_train = SYNTHETIC_TRAIN if max_train_samples is None else max_train_samples
    n_val = val_count(n_train, val_fraction)
    generator = torch.Generator().manual_seed(SYNTHETIC_SEED)
    train, val, test = (
        synthetic_images(n, 10, generator) for n in (n_train, n_val, min(SYNTHETIC_TEST, n_train))
    )
    return DataSplits("synthetic", train, val, test, 10, SYNTHETIC_MEAN, SYNTHETIC_STD, flip=True)


def synthetic_images(n: int, num_classes: int, generator: torch.Generator) -> ImageSet:
    """`n` random uint8 3x32x32 images with random labels."""
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, num_classes, (n,), generator=generator)
    return ImageSet(x, y)


def _load_cifar(
    name: str, data_dir: str | Path | None, verify_checksums: bool
) -> tuple[ImageSet, ImageSet, int]:
    from torchvision import datasets

    if data_dir is None:
        raise UserError(
            f"dataset {name!r} needs --data-dir pointing at a folder that holds "
            f"{CIFAR_FOLDERS[name]}/"
        )
    root = Path(data_dir).expanduser()
    folder = root / CIFAR_FOLDERS[name]
    if not folder.is_dir():
        archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
        raise UserError(
            f"{name} not found: expected the folder {folder}. Nothing is downloaded at run time: "
            "on a machine "
            'with internet run `python -c "import torchvision; '
            f"torchvision.datasets.{_cifar_class(name)}"
            f"('{root}', download=True)\"` or fetch https://www.cs.toronto.edu/~kriz/{archive} and "
            "extract it "
            f"into {root}."
        )
    cls = getattr(datasets, _cifar_class(name))
    if not verify_checksums:
        log.warning("md5 check of %s files in %s is OFF (verify_checksums=False)", name, folder)
        cls = _without_md5(cls)
    try:
        train_ds, test_ds = (
            cls(str(root), train=True, download=False),
            cls(str(root), train=False, download=False),
        )
    except RuntimeError as err:
        raise UserError(
            f"{name} in {folder} failed torchvision's md5 check ({err}); re-extract the official "
            "archive"
        ) from err
    return _as_imageset(train_ds), _as_imageset(test_ds), len(train_ds.classes)


def _cifar_class(name: str) -> str:
    return "CIFAR10" if name == "cifar10" else "CIFAR100"


def _without_md5(cls: type) -> type:
    """A CIFAR class that checks the files exist but not their md5 (for small files in CIFAR
    layout)."""

    class Unverified(cls):  # type: ignore[misc, valid-type]
        meta = {
            **cls.meta,
            "md5": None,
        }  # torchvision's check_integrity(path, None) only checks existence

        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            return all(
                (folder / filename).is_file() for filename, _ in self.train_list + self.test_list
            )

    Unverified.__name__ = f"Unverified{cls.__name__}"
    return Unverified


def _as_imageset(ds) -> ImageSet:
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.as_tensor(ds.targets, dtype=torch.int64))


def _split(train: ImageSet, val_fraction: float) -> tuple[ImageSet, ImageSet]:
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED + 1))
    n_val = val_count(len(train), val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    return ImageSet(train.x[train_idx], train.y[train_idx]), ImageSet(
        train.x[val_idx], train.y[val_idx]
    )


def _channel_stats(x: torch.Tensor, std: bool = False) -> tuple[float, float, float]:
    values = x.float().div(255).transpose(0, 1).reshape(x.shape[1], -1)
    stats = values.std(dim=1) if std else values.mean(dim=1)
    return tuple(float(v) for v in stats)  # type: ignore[return-value]


class Batcher:
    """Shuffles, augments (random crop with padding, optional flip) and normalises on the data's
    device."""

    def __init__(self, splits: DataSplits, channels_last: bool = False, crop_padding: int = 4):
        device = splits.train.x.device
        self.mean = torch.tensor(splits.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(splits.std, device=device).view(1, -1, 1, 1)
        self.flip = splits.flip
        self.padding = crop_padding
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float().div_(255) - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-image random translation by up to `padding` pixels (zero fill) and random flip."""
        n, _, h, w = x.shape
        p = self.padding
        device = x.device
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(device)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(device)
        rows = (torch.arange(h, device=device)[None, :] + dy[:, None])[:, None, :, None]
        cols = (torch.arange(w, device=device)[None, :] + dx[:, None])[:, None, None, :]
        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(device)
            cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
        batch_idx = torch.arange(n, device=device)[:, None, None, None]
        chan_idx = torch.arange(x.shape[1], device=device)[None, :, None, None]
        return padded[batch_idx, chan_idx, rows, cols]

    def train_batches(
        self, data: ImageSet, batch_size: int, generator: torch.Generator, augment: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One shuffled epoch; the last partial batch is dropped when there are full ones (keeps BN
        stable). With several data-parallel workers each gets its shard of every global batch,
        augmented as a whole."""
        for idx in self.global_batch_indices(len(data), batch_size, generator, data.x.device):
            x = data.x[idx]
            if augment:
                x = self.augment(
                    x, generator
                )  # random draws for the global batch: workers stay in step
            part = shard_slice(len(idx))
            yield self.normalise(x[part]), data.y[idx[part]]

    @staticmethod
    def batch_indices(
        n: int, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> Iterator[torch.Tensor]:
        """This worker's sample indices of each batch of one shuffled epoch over `n` samples (all of
        them with one worker; see `train_batches`)."""
        for idx in Batcher.global_batch_indices(n, batch_size, generator, device):
            yield idx[shard_slice(len(idx))]

    @staticmethod
    def global_batch_indices(
        n: int, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> Iterator[torch.Tensor]:
        """The sample indices of each whole batch of one shuffled epoch over `n` samples."""
        order = torch.randperm(n, generator=generator).to(device)
        for i in range(max(1, n // batch_size)):
            yield order[i * batch_size : (i + 1) * batch_size]

    def eval_batches(
        self, data: ImageSet, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(data), batch_size):
            yield (
                self.normalise(data.x[start : start + batch_size]),
                data.y[start : start + batch_size],
            )
