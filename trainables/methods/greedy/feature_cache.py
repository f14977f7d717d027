"""Sequential greedy's optional feature cache: a frozen prefix's output for the whole training
set, if it fits."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from trainables.data import Batcher, ImageSet
from trainables.measure import MB

log = logging.getLogger(__name__)

CACHE_BATCH = 512
CACHE_FREE_FRACTION = 0.5  # cache only when the features need at most this share of the free memory
_MEMINFO = "/proc/meminfo"


def cached_features(
    prefix: Callable[[torch.Tensor, int], torch.Tensor],
    data: ImageSet,
    batcher: Batcher,
    feature_shape: tuple[int, ...],
    stop: int,
    device: torch.device,
    amp: bool,
    limit_mb: float | None,
) -> torch.Tensor | None:
    """`prefix(x, stop)` of every (unaugmented) training image, or None when that needs more than
    `limit_mb` (None: half the device's free memory)."""
    itemsize = 2 if device.type == "cuda" and amp else 4
    need_mb = len(data) * math.prod(feature_shape) * itemsize / MB
    if limit_mb is None:
        limit_mb = CACHE_FREE_FRACTION * free_memory_mb(device)
    if need_mb > limit_mb:
        log.warning(
            "cache_features: the output of blocks[:%d] for %d images needs %.1f MB > limit %.1f "
            "MB; "
            "re-running the frozen blocks on every batch instead",
            stop,
            len(data),
            need_mb,
            limit_mb,
        )
        return None
    log.info(
        "cache_features: caching blocks[:%d] output (%.1f MB, no augmentation in this stage)",
        stop,
        need_mb,
    )
    return torch.cat([prefix(x, stop) for x, _ in batcher.eval_batches(data, CACHE_BATCH)])


def free_memory_mb(device: torch.device) -> float:
    """Free memory on `device` in MB: CUDA's free bytes, or MemAvailable on Linux; 0 when
    unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / MB
    try:
        with open(_MEMINFO) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
