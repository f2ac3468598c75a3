"""The Linear (fully connected) layer, the readable reference.

Shapes: x is (N, K), weight is (M, K) (PyTorch's layout: one row per output
feature), bias is (M,) (zero-length when absent), y is (N, M).

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


def linear_forward(x, weight, bias, relu, y):
    np.matmul(x, weight.T, out=y)
    if bias.size:
        y += bias
    if relu:
        np.maximum(y, 0, out=y)


def linear_backward(dy, x, weight, y, relu, dx, dweight, dbias):
    dz = dy * (y > 0) if relu else dy
    if dx.size:
        np.matmul(dz, weight, out=dx)
    np.matmul(dz.T, x, out=dweight)
    if dbias.size:
        dbias[...] = dz.sum(axis=0, dtype=np.float64)
