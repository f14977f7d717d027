"""Auxiliary classifiers attached to a block's output (layer_to_layer's student heads, greedy's
heads).

layer_to_layer (`build_aux_head`, its `aux` knob):
- `linear`: global average pool + linear (docs/layer_to_layer.md).
- `conv`: average pool to at most 8x8, one 3x3 conv + BN + ReLU, average pool to 2x2, linear.

greedy (`build_greedy_head`, its `aux_head` knob; docs/greedy.md sets them against the authors'
code):
- `layercnn` (Belilovsky et al. 2019, eugenium/layerCNN `auxillary_classifier`): the paper's k
  counts the trained block, so the head has k-1 hidden layers: (k-1) x (3x3 conv + BN + ReLU) at
  the block's resolution with `width` channels (default: the block's own, as their cifar.py keeps
  `--width_aux` equal to `--feature_size`), average pool to 2x2, BN, linear; k=1 is pool + BN +
  linear.
- `pooled`: the same after an average pool to at most 8x8 (cheaper on high-resolution blocks).
- `dgl` (Belilovsky et al. 2020, eugenium/DGL `auxiliary_nets_study/models.py`
  `auxillary_classifier2`): its `mlp-sr` net for a block (average pool to a quarter of the
  resolution, 3 x (1x1 conv + BN + ReLU) at the block's channels, average pool to 2x2, 3 x
  (linear + BN + ReLU) as wide as the flattened map, linear) and its final net for the network's
  last block (the same without the convs and with 2 hidden linear layers).
Vector features get the MLP analogue (a 1x1 conv on a vector is a linear layer).
"""

from __future__ import annotations

import math

from torch import nn

from trainables.config import check_choice, check_range

AUX_KINDS = ("linear", "conv")
GREEDY_HEADS = ("layercnn", "pooled", "dgl")
MAX_POOLED_RESOLUTION = 8
HEAD_POOL = 2  # the authors pool every head to 2x2 before its BN and linear layer
DGL_REDUCTION = 4  # DGL's mlp-sr first pools to a quarter of the block's height and width
DGL_CONVS, DGL_MLP_LAYERS = 3, 3  # its `mlp-sr`: n_lin=3, mlp_layers=3
DGL_FINAL_MLP_LAYERS = 2  # its net on the last block: n_lin=0, mlp_layers=2


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
    feature_shape: tuple[int, ...],
    num_classes: int,
    kind: str,
    k: int = 3,
    width: int | None = None,
    final: bool = False,
) -> nn.Sequential:
    """greedy's classifier of kind `kind` for a block output of shape `feature_shape` (C,H,W or D,).

    `k` and `width` shape the `layercnn`/`pooled` heads (width None: the block's channels); `final`
    picks DGL's final net, the one its authors put on the network's last block."""
    check_choice("aux_head", kind, GREEDY_HEADS)
    if kind == "dgl":
        return dgl_head(feature_shape, num_classes, final)
    return layercnn_head(feature_shape, num_classes, k, width, pooled=kind == "pooled")


def layercnn_head(
    feature_shape: tuple[int, ...],
    num_classes: int,
    k: int,
    width: int | None = None,
    pooled: bool = False,
) -> nn.Sequential:
    """layerCNN's `auxillary_classifier` (`--nlin` = k-1 hidden layers of `width` units; 1x1
    convs on a 1x1 map, which their blocks never reach)."""
    check_range("aux_k", k, 1, None)
    width = feature_shape[0] if width is None else width
    check_range("width_aux", width, 1, None)
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
        if pooled and height > MAX_POOLED_RESOLUTION
        else []
    )
    # on a 1x1 map (vgg's last block) a padded 3x3 conv is a 1x1 conv with 8/9 of its weights
    # dead: the same function, with the weights it uses
    kernel = 3 if height > 1 else 1
    for _ in range(k - 1):
        layers += _conv_bn_relu(channels, width, kernel)
        channels = width
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(HEAD_POOL),
        nn.BatchNorm2d(channels),
        nn.Flatten(),
        nn.Linear(channels * HEAD_POOL**2, num_classes),
    )


def dgl_head(
    feature_shape: tuple[int, ...], num_classes: int, final: bool = False
) -> nn.Sequential:
    """DGL's `auxillary_classifier2`: `mlp-sr` (n_lin=3 1x1 convs, mlp_layers=3), or with `final`
    the net of the last block (n_lin=0, mlp_layers=2).

    The map is first pooled to ceil(H/4) x ceil(W/4), as theirs is. Their blocks are never below
    8x8, so their second pool, to 2x2, never enlarges a map. Ours go down to 1x1: where a quarter
    of the map is under 2x2 (blocks at 4x4 or less), it is not copied up to 2x2 (copies would add
    weights to the MLP, not information)."""
    convs, hidden = (0, DGL_FINAL_MLP_LAYERS) if final else (DGL_CONVS, DGL_MLP_LAYERS)
    if len(feature_shape) == 1:
        dim = feature_shape[0]
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU()]
    else:
        channels, height, width = feature_shape
        reduced = (math.ceil(height / DGL_REDUCTION), math.ceil(width / DGL_REDUCTION))
        pooled = (min(HEAD_POOL, reduced[0]), min(HEAD_POOL, reduced[1]))
        layers = [nn.AdaptiveAvgPool2d(reduced)] if reduced != (height, width) else []
        for _ in range(convs):
            layers += [
                nn.Conv2d(channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
        layers += [nn.AdaptiveAvgPool2d(pooled)] if pooled != reduced else []
        layers.append(nn.Flatten())
        dim = channels * pooled[0] * pooled[1]
    for _ in range(hidden):
        layers += [nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(dim, num_classes))


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
