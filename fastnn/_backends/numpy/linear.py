"""The Linear (fully connected) layer, the readable reference.

Shapes: x is (N, K), weight is (M, K) (PyTorch's layout: one row per output
feature), bias is (M,), y is (N, M).

Forward:
    z = x @ weight.T + bias
    y = relu(z) = max(z, 0)     with activation="relu", else y = z
Saved for the backward: nothing beyond the inputs and, for ReLU, the output
y, whose sign is the mask (z > 0 exactly where y > 0).

Backward, with dz = dy * (y > 0) for ReLU and dz = dy otherwise:
    dx      = dz @ weight           (N, K)
    dweight = dz.T @ x              (M, K)
    dbias   = sum_n dz              (M,)
"""

import numpy as np


def linear_forward(x, weight, bias, activation):
    y = x @ weight.T
    if bias is not None:
        y += bias
    if activation == "relu":
        np.maximum(y, 0, out=y)
    return y


def linear_backward(dy, x, weight, y, activation, has_bias, need_dx):
    dz = dy * (y > 0) if activation == "relu" else dy
    dx = dz @ weight if need_dx else None
    dweight = dz.T @ x
    dbias = dz.sum(axis=0, dtype=np.float64).astype(dy.dtype) if has_bias else None
    return dx, dweight, dbias
