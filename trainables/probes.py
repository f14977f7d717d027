"""Per-block linear probes: how linearly separable each block's output is (separability as in Xu
2023, saturation as in Trinh 2019). Works for any trained BlockNet, whatever method trained it.

For every block, its output is global-average-pooled (vector outputs stay as they are), a
multinomial logistic regression on standardised features is fitted on (at most `max_samples`)
training images and scored on (at most `max_samples`) validation images. One forward pass per
split collects every block's features.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from trainables.data import Batcher, DataSplits, ImageSet
from trainables.models import BlockNet

log = logging.getLogger(__name__)

PROBE_BATCH = 512
PROBE_SEED = 0
PROBE_MAX_ITER = 1000


def probe_accuracies(
    model: BlockNet, splits: DataSplits, batcher: Batcher, max_samples: int = 5000
) -> list[float]:
    """Validation accuracy of a linear probe on every block's pooled output, block 0 first."""
    train_x, train_y = block_features(model, _first(splits.train, max_samples), batcher)
    val_x, val_y = block_features(model, _first(splits.val, max_samples), batcher)
    accuracies = []
    for block, (xt, xv) in enumerate(zip(train_x, val_x, strict=True)):
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=PROBE_SEED)
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            probe.fit(xt, train_y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.warning(
                "linear probe of block %d did not converge in %d iterations", block, PROBE_MAX_ITER
            )
        accuracies.append(float(probe.score(xv, val_y)))
    log.info("probe accuracies per block: %s", [round(a, 4) for a in accuracies])
    return accuracies


@torch.no_grad()
def block_features(
    model: BlockNet, data: ImageSet, batcher: Batcher
) -> tuple[list[np.ndarray], np.ndarray]:
    """Pooled float32 output of every block for `data` (eval mode, one pass), and the labels."""
    was_training = model.training
    model.eval()
    per_block: list[list[torch.Tensor]] = [[] for _ in range(model.num_blocks)]
    for x, _ in batcher.eval_batches(data, PROBE_BATCH):
        for block, features in zip(model.blocks, per_block):
            x = block(x)
            pooled = x.float().mean(dim=(2, 3)) if x.dim() == 4 else x.float().flatten(1)
            features.append(pooled.cpu())
    model.train(was_training)
    return [torch.cat(f).numpy() for f in per_block], data.y.cpu().numpy()


def _first(data: ImageSet, max_samples: int) -> ImageSet:
    """The first `max_samples` samples (the splits are already shuffled with a fixed seed)."""
    return ImageSet(data.x[:max_samples], data.y[:max_samples])
