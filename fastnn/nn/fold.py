"""``fold_batchnorm``: merge each Linear -> BatchNorm pair into one Linear for inference.

In evaluation a BatchNorm is a fixed affine map per feature,
y = (z - mu) * s + beta with s = gamma / sqrt(sigma^2 + eps), so after a
Linear z = x @ W.T + b the pair is one Linear:
    W' = W * s (row j scaled by s_j),   b' = (b - mu) * s + beta
(a Linear without bias counts b = 0; a BatchNorm without affine parameters
counts gamma = 1, beta = 0).  Computed in float64, rounded to the layer's
dtype.  The folded model does one kernel call fewer per pair, and a ReLU
after the pair then fuses into the new Linear's kernel.

Test: tests/test_nn_model.py (outputs equal the unfolded model's in
evaluation; fewer kernel calls).
"""

import copy

import numpy as np

from .batchnorm import BatchNorm
from .container import Sequential
from .linear import Linear
from .module import Module, Parameter


def fold_batchnorm(model):
    """An evaluation-mode copy of ``model`` with every Linear directly
    followed by a BatchNorm (with running statistics) merged into one Linear.

    ``model`` is not changed.  Sequentials inside are folded too; a
    BatchNorm with ``track_running_stats=False`` normalizes with each
    batch's statistics and cannot be folded (it is kept).
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a fastnn.nn.Module, got {type(model).__name__}")
    folded = _fold(model) if isinstance(model, Sequential) else copy.deepcopy(model)
    return folded.eval()


def _fold(sequential):
    layers = []
    children = sequential.layers
    i = 0
    while i < len(children):
        layer = children[i]
        following = children[i + 1] if i + 1 < len(children) else None
        if (type(layer) is Linear and type(following) is BatchNorm
                and following.track_running_stats
                and following.num_features == layer.out_features
                and following.dtype == layer.dtype):
            layers.append(_merge(layer, following))
            i += 2
            continue
        layers.append(_fold(layer) if isinstance(layer, Sequential) else copy.deepcopy(layer))
        i += 1
    return Sequential(*layers)


def _merge(linear, batchnorm):
    weight = linear.weight.data.astype(np.float64)
    bias = (linear.bias.data.astype(np.float64) if linear.bias is not None
            else np.zeros(linear.out_features))
    scale = 1.0 / np.sqrt(batchnorm.running_var.astype(np.float64) + batchnorm.eps)
    shift = np.zeros(linear.out_features)
    if batchnorm.affine:
        scale = scale * batchnorm.weight.data.astype(np.float64)
        shift = batchnorm.bias.data.astype(np.float64)
    merged = Linear(linear.in_features, linear.out_features, bias=True, dtype=linear.dtype,
                    seed=0)
    merged.weight = Parameter((weight * scale[:, None]).astype(linear.dtype))
    merged.bias = Parameter(((bias - batchnorm.running_mean.astype(np.float64)) * scale
                             + shift).astype(linear.dtype))
    return merged
