"""Fashion-MNIST from the four official IDX files (`.gz` or plain), checked by md5 and cached
decompressed.

Debian's `dataset-fashion-mnist` puts the files, gzipped by Debian (so their gzip md5s differ from
torchvision's list), in DEFAULT_DIR. The decompressed contents are checked against the official md5s
below, written once to a per-user cache in torchvision's `FashionMNIST/raw/` layout (tmp file +
`os.replace`, so concurrent trials never read a half-written file) and read by torchvision's own
`FashionMNIST(..., download=False)` reader. Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import zlib
from pathlib import Path

import torch

from trainables.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
# md5 of the DECOMPRESSED official files (the same bytes whichever gzip wrapped them)
FILES = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FIX = (
    "install Debian's package (apt-get install dataset-fashion-mnist) or pass --data-dir a folder "
    "holding "
    f"the four official files ({', '.join(FILES)}; .gz or plain)"
)


def load_fashion_mnist(
    data_dir: str | Path | None = None,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((train images, labels), (test images, labels)): uint8 N x 28 x 28 and int64, 60,000 and
    10,000."""
    from torchvision.datasets import FashionMNIST

    root = cached_copy(Path(data_dir).expanduser() if data_dir else DEFAULT_DIR)
    train = FashionMNIST(str(root), train=True, download=False)
    test = FashionMNIST(str(root), train=False, download=False)
    return (train.data, train.targets), (test.data, test.targets)


def cached_copy(data_dir: Path) -> Path:
    """The torchvision root holding `FashionMNIST/raw/` with verified decompressed copies of
    `data_dir`'s files.

    Every source file must exist; one is only decompressed when the cache lacks a copy with the
    official md5.
    """
    sources = {name: find_source(data_dir, name) for name in FILES}
    root = cache_dir()
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, md5 in FILES.items():
        target = raw / name
        if target.is_file() and _md5(target.read_bytes()) == md5:
            continue
        contents = _decompressed(sources[name])
        if _md5(contents) != md5:
            raise UserError(
                f"fashion_mnist: {sources[name]} is not the official {name} (md5 of its contents "
                f"{_md5(contents)}, expected {md5}); {FIX}"
            )
        _write_atomic(target, contents)
        log.info("cached %s -> %s", sources[name], target)
    return root


def find_source(data_dir: Path, name: str) -> Path:
    """`name` or `name.gz` in `data_dir`, or in its `FashionMNIST/raw/` (torchvision's download
    layout)."""
    for folder in (data_dir, data_dir / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise UserError(f"fashion_mnist: {data_dir / name}(.gz) not found; {FIX}")


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/l2l-study/fashion-mnist (default ~/.cache/...), or the temp dir if that is
    not writable."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    preferred = base / "l2l-study" / "fashion-mnist"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"l2l-study-{os.getuid()}" / "fashion-mnist"
    log.warning("cache %s is not writable; using %s", preferred, fallback)
    return fallback


def _decompressed(source: Path) -> bytes:
    if source.suffix != ".gz":
        return source.read_bytes()
    try:
        return gzip.decompress(source.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(
            f"fashion_mnist: {source} is not a readable gzip file ({err}); {FIX}"
        ) from err


def _write_atomic(target: Path, contents: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(contents)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _md5(contents: bytes) -> str:
    return hashlib.md5(contents).hexdigest()
