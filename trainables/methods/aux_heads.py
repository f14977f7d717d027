"""Auxiliary classifiers attached to a block's output (layer_to_layer's student head, greedy's heads).

- `linear`: global average pool + linear (DESIGN §3, layer_to_layer's default `aux`).
- `conv`: `depth` x (3x3 conv, BN, ReLU) at a resolution pooled down to at most 8x8, then
  average pool to 2x2 + linear: Belilovsky et al.'s auxiliary problem with k hidden layers,
  pooled first so that the head never needs more memory than the block it trains.
Vector features (e.g. seed_cnn's fc block) get a linear head, or an MLP of `depth` hidden layers.
"""
from __future__ import annotations

from torch import nn

from trainables.config import check_choice, check_range

AUX_KINDS = ("linear", "conv")
MAX_AUX_RESOLUTION = 8


def build_aux_head(feature_shape: tuple[int, ...], num_classes: int, kind: str = "linear", depth: int = 1) -> nn.Module:
    """A classifier from a block output of shape `feature_shape` (C,H,W or D,) to `num_classes` logits."""
    check_choice("aux", kind, AUX_KINDS)
    check_range("aux_depth", depth, 1, 3)
    if len(feature_shape) == 1:
        dim = feature_shape[0]
        hidden = [m for _ in range(depth if kind == "conv" else 0) for m in (nn.Linear(dim, dim), nn.ReLU())]
        return nn.Sequential(*hidden, nn.Linear(dim, num_classes))
    channels, height, _ = feature_shape
    if kind == "linear":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    layers: list[nn.Module] = []
    if height > MAX_AUX_RESOLUTION:
        layers.append(nn.AdaptiveAvgPool2d(MAX_AUX_RESOLUTION))
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(channels * 4, num_classes)]
    return nn.Sequential(*layers)
