"""Auxiliary classifiers attached to a block's output (layer_to_layer's student heads, greedy's heads).

layer_to_layer (`build_aux_head`, its `aux` knob):
- `linear`: global average pool + linear (the first design's head; it did not learn here).
- `conv`: average pool to at most 8x8, one 3x3 conv + BN + ReLU, average pool to 2x2, linear.

greedy (`build_greedy_head`; Belilovsky et al. 2019, eugenium/layerCNN `auxillary_classifier`): the
paper's k counts the trained block, so the head has k-1 hidden layers:
- `paper`: (k-1) x (3x3 conv with `width` channels + BN + ReLU) at the block's resolution, average
  pool to 2x2, BN, linear; k=1 is pool + BN + linear.
- `pooled`: the same after an average pool to at most 8x8 (cheaper on high-resolution blocks).
Vector features get the MLP analogue: (k-1) x (linear + BN + ReLU), BN, linear.
"""

from __future__ import annotations

from torch import nn

from trainables.config import check_choice, check_range

AUX_KINDS = ("linear", "conv")
GREEDY_HEADS = ("paper", "pooled")
MAX_POOLED_RESOLUTION = 8
HEAD_POOL = 2  # the authors pool every head to 2x2 before its BN and linear layer


def build_aux_head(
    feature_shape: tuple[int, ...], num_classes: int, kind: str = "linear"
) -> nn.Module:
    """layer_to_layer's classifier from a block output of shape `feature_shape` (C,H,W or D,)."""
    check_choice("aux", kind, AUX_KINDS)
    if len(feature_shape) == 1:
        dim = feature_shape[0]
        hidden = [nn.Linear(dim, dim), nn.ReLU()] if kind == "conv" else []
        return nn.Sequential(*hidden, nn.Linear(dim, num_classes))
    channels, height, _ = feature_shape
    if kind == "linear":
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
        )
    pool = [nn.AdaptiveAvgPool2d(MAX_POOLED_RESOLUTION)] if height > MAX_POOLED_RESOLUTION else []
    return nn.Sequential(
        *pool,
        *_conv_bn_relu(channels, channels),
        nn.AdaptiveAvgPool2d(HEAD_POOL),
        nn.Flatten(),
        nn.Linear(channels * HEAD_POOL**2, num_classes),
    )


def build_greedy_head(
    feature_shape: tuple[int, ...], num_classes: int, k: int, width: int, variant: str = "paper"
) -> nn.Sequential:
    """greedy's classifier for a block output of shape `feature_shape`: k-1 hidden layers of `width` units."""
    check_range("aux_k", k, 1, None)
    check_range("width_aux", width, 1, None)
    check_choice("aux_head", variant, GREEDY_HEADS)
    if len(feature_shape) == 1:
        layers: list[nn.Module] = []
        dim = feature_shape[0]
        for _ in range(k - 1):
            layers += [nn.Linear(dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            dim = width
        return nn.Sequential(*layers, nn.BatchNorm1d(dim), nn.Linear(dim, num_classes))
    channels, height, _ = feature_shape
    layers = (
        [nn.AdaptiveAvgPool2d(MAX_POOLED_RESOLUTION)]
        if variant == "pooled" and height > MAX_POOLED_RESOLUTION
        else []
    )
    for _ in range(k - 1):
        layers += _conv_bn_relu(channels, width)
        channels = width
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(HEAD_POOL),
        nn.BatchNorm2d(channels),
        nn.Flatten(),
        nn.Linear(channels * HEAD_POOL**2, num_classes),
    )


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
