"""Data: digits, real Fashion-MNIST, the torchvision CIFAR path, synthetic data, splits,
on-device batching."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from study.cli import main as cli_main
from tests.conftest import write_cifar
from trainables.data import FASHION_MEAN, FASHION_STD, Batcher, load_dataset
from trainables.errors import UserError
from trainables.fashion_mnist import DEFAULT_DIR, FILES, cached_copy, load_fashion_mnist
from trainables.training import fit


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
    with pytest.raises(ValueError, match="digits, fashion_mnist, cifar10, cifar100, synthetic"):
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
    batches = list(
        batcher.train_batches(digits.train, 100, torch.Generator().manual_seed(0), augment=False)
    )
    assert len(batches) == len(digits.train) // 100
    x = torch.cat([b[0] for b in batches])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1
    labels = torch.cat([b[1] for b in batches])
    assert len(labels.unique()) == 10


# --- Fashion-MNIST: the real files (Debian's dataset-fashion-mnist; .ci/run installs it) ---


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    """The verified cache of the Debian package's files; skipped on a dev machine without the
    package, never in CI."""
    try:
        return cached_copy(DEFAULT_DIR)
    except UserError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real Fashion-MNIST files: {err}")
        pytest.skip(f"no Fashion-MNIST here: {err}")


def test_fashion_cache_holds_the_official_decompressed_files(fashion_root: Path):
    raw = fashion_root / "FashionMNIST" / "raw"
    for name, md5 in FILES.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    assert not list(raw.glob("*.tmp"))


def test_fashion_split_sizes_and_32x32_rgb_mapping(fashion_root: Path):
    s = load_dataset("fashion_mnist", val_fraction=0.1)
    assert (len(s.train), len(s.val), len(s.test)) == (54_000, 6_000, 10_000)
    assert s.num_classes == 10 and s.flip
    assert tuple(s.test.x.shape[1:]) == (3, 32, 32) and s.test.x.dtype == torch.uint8
    labels = torch.cat([s.train.y, s.val.y])
    assert labels.bincount().tolist() == [6_000] * 10
    x = s.test.x
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey repeated
    (_, _), (test_x, _) = load_fashion_mnist()
    assert torch.equal(x[:, 0, 2:30, 2:30], test_x)  # the 28x28 pixels untouched, centred
    assert x[:, :, :2].sum() == 0 and x[:, :, :, 30:].sum() == 0  # a zero border


def test_fashion_subset_caps_train_but_test_stays_full(fashion_root: Path):
    s = load_dataset("fashion_mnist", max_train_samples=500)
    assert len(s.train) == 500 and len(s.test) == 10_000


def test_fashion_pixel_statistics_match_the_published_constants(fashion_root: Path):
    (train_x, train_y), (test_x, test_y) = load_fashion_mnist()
    assert (len(train_y), len(test_y)) == (60_000, 10_000)
    pixels = train_x.float().div(255)
    assert abs(float(pixels.mean()) - 0.286) < 5e-4 and abs(float(pixels.std()) - 0.353) < 5e-4
    assert FASHION_MEAN[0] == pytest.approx(float(pixels.mean()), abs=5e-4)
    assert FASHION_STD[0] == pytest.approx(float(pixels.std()), abs=5e-4)


@pytest.mark.slow
def test_fashion_short_standard_training_is_well_above_chance_on_the_full_test_set(
    fashion_root: Path, make_config
):
    config = make_config(
        dataset="fashion_mnist",
        epochs=2,
        width=0.25,
        batch_size=64,
        max_train_samples=4_000,
        val_fraction=0.02,
        augment=False,
    )
    final = fit(config)
    assert (
        final["test_acc"] > 0.60
    )  # chance is 0.10; 0.70 measured (2-core machine, 2026-11-26), ~10 s of CPU


# --- Fashion-MNIST: error paths on small files ---


def _official_like(folder: Path, skip: str | None = None, gz: bool = True) -> Path:
    """Four small files with the official names (wrong contents) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name != skip:
            contents = f"not {name}".encode()
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(contents))
            else:
                (folder / name).write_bytes(contents)
    return folder


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "l2l-study" / "fashion-mnist"


def test_missing_fashion_file_is_one_line_naming_it_and_the_fix(tmp_path: Path, own_cache: Path):
    folder = _official_like(tmp_path / "data", skip="t10k-labels-idx1-ubyte")
    with pytest.raises(UserError) as err:
        load_dataset("fashion_mnist", folder)
    message = str(err.value)
    assert "\n" not in message
    assert (
        str(folder / "t10k-labels-idx1-ubyte") in message
        and "apt-get install dataset-fashion-mnist" in message
    )


def test_corrupted_fashion_file_is_one_line_naming_it_and_the_fix(tmp_path: Path, own_cache: Path):
    folder = _official_like(tmp_path / "data", gz=False)
    with pytest.raises(UserError) as err:
        load_dataset("fashion_mnist", folder)
    message = str(err.value)
    assert "\n" not in message and "md5" in message
    assert (
        str(folder / "train-images-idx3-ubyte") in message
        and "apt-get install dataset-fashion-mnist" in message
    )
    assert not (
        own_cache / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    ).exists()  # nothing bad cached


def test_unreadable_gzip_is_one_line_naming_it(tmp_path: Path, own_cache: Path):
    folder = _official_like(tmp_path / "data")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"this is no gzip")
    with pytest.raises(
        UserError, match="train-images-idx3-ubyte.gz is not a readable gzip file"
    ) as err:
        load_dataset("fashion_mnist", folder)
    assert "\n" not in str(err.value)


def test_cli_reports_a_missing_folder_in_one_line_with_exit_2(
    tmp_path: Path, own_cache: Path, capsys
):
    code = cli_main(
        [
            "trial",
            "--dataset",
            "fashion_mnist",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--no-mlflow",
        ]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert (
        code == 2 and "Traceback" not in err and len(errors) == 1
    )  # (the progress bar's line may precede it)
    assert (
        errors[0].startswith("error: ")
        and "nowhere" in errors[0]
        and "dataset-fashion-mnist" in errors[0]
    )


def test_plain_files_load_and_a_damaged_cache_copy_is_rebuilt(
    fashion_root: Path, tmp_path: Path, own_cache: Path
):
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in FILES:  # decompressed official files, as a user might have them
        shutil.copy(fashion_root / "FashionMNIST" / "raw" / name, folder / name)
    root = cached_copy(folder)
    assert root == own_cache
    damaged = root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    damaged.write_bytes(b"half-written")
    (_, _), (_, test_y) = load_fashion_mnist(folder)
    assert len(test_y) == 10_000
    assert hashlib.md5(damaged.read_bytes()).hexdigest() == FILES["t10k-labels-idx1-ubyte"]


# --- synthetic: seeded CIFAR-size random data for throughput runs ---


def test_synthetic_is_cifar_size_and_the_same_every_time():
    a, b = (
        load_dataset("synthetic", max_train_samples=200),
        load_dataset("synthetic", max_train_samples=200),
    )
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert tuple(a.train.x.shape) == (200, 3, 32, 32) and a.train.x.dtype == torch.uint8
    assert (len(a.val), len(a.test), a.num_classes) == (20, 200, 10)
    assert not torch.equal(a.train.x[:20], a.val.x)


def test_synthetic_default_is_50000_train_images():
    s = load_dataset("synthetic", val_fraction=0.1)
    assert (len(s.train), len(s.val), len(s.test)) == (50_000, 5_000, 10_000)


def test_fashion_spec_is_a_valid_study_on_the_real_data():
    from study.spec import load_spec

    spec = load_spec("fashion")
    assert spec.dataset == "fashion_mnist" and spec.fixed["augment"] is False
    assert spec.budget.epochs >= 5  # greedy: one epoch per seed_cnn block
    config = spec.train_config("seed_cnn", "greedy")
    assert config.max_train_samples and config.max_train_samples < 57_000


def test_a_reader_never_sees_a_half_written_cache_file(fashion_root: Path, own_cache: Path):
    import threading

    target = own_cache / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    full = (fashion_root / "FashionMNIST" / "raw" / target.name).stat().st_size
    writer = threading.Thread(target=cached_copy, args=(DEFAULT_DIR,))
    sizes: set[int] = set()
    writer.start()
    while writer.is_alive():
        if target.exists():
            sizes.add(target.stat().st_size)
    writer.join()
    assert target.stat().st_size == full and sizes <= {full}
    assert not list(target.parent.glob("*.tmp"))
