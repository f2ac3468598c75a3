"""Batch normalization, the readable reference.

Shapes: x and y are (N, C, S), S the product of the spatial dimensions (1
for an (N, C) input); statistics are per channel C, taken over the batch N
and every spatial position.  n = N * S is the number of values per channel.
An absent weight or bias is a zero-length array (the contract's stand-in):
no scale, no shift.

Forward, training:
    mean   = (1/n) sum x                      (per channel)
    var    = (1/n) sum (x - mean)^2           (biased: used to normalize)
    invstd = 1 / sqrt(var + eps)
    xhat   = (x - mean) * invstd
    y      = weight * xhat + bias             (weight is gamma, bias is beta)
  and, when running statistics are given, in place:
    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)
Forward, evaluation: the same map with mean = running_mean and
var = running_var; nothing is updated.

Saved for the backward: ``mean`` and ``invstd`` (per channel).  The backward
recomputes xhat from x instead of storing it.

Backward, training (mean and var depend on x):
    dbias   = sum dy
    dweight = sum dy * xhat
    dx      = weight * invstd * (dy - dbias / n - xhat * dweight / n)
Backward, evaluation (a fixed affine map):
    dx = weight * invstd * dy, with the same dweight and dbias.

The variance is computed in two passes (mean first, then squared
deviations), so it stays accurate when the mean is large against the spread,
where E[x^2] - E[x]^2 would cancel; the mean itself is summed from values
shifted by one value of the channel.  float32 sums are accumulated in float64.
"""

import numpy as np


def _per_channel(v):
    """(C,) -> (1, C, 1), to broadcast against an (N, C, S) array."""
    return v.reshape(1, -1, 1)


def _acc_dtype(dtype):
    return np.float64 if dtype == np.float32 else dtype


def batchnorm_forward(x, weight, bias, running_mean, running_var,
                      training, momentum, eps, y, mean, invstd):
    acc = _acc_dtype(x.dtype)
    if training:
        n = x.shape[0] * x.shape[2]
        # Each channel's values as one contiguous row (a copy), so that NumPy
        # sums them pairwise (an error of ~log n roundings, not n), shifted
        # by one value of the channel so the sums stay small where the mean
        # is large against the spread.
        values = x.transpose(1, 0, 2).reshape(x.shape[1], -1).astype(acc)
        shift = values[:, :1]
        batch_mean = (shift + (values - shift).sum(axis=1, keepdims=True) / n)[:, 0]
        var = ((values - batch_mean[:, None]) ** 2).sum(axis=1) / n
        if running_mean.size:
            running_mean *= 1 - momentum
            running_mean += momentum * batch_mean
        if running_var.size:
            running_var *= 1 - momentum
            running_var += momentum * var * (n / (n - 1))
    else:
        batch_mean = running_mean.astype(acc)
        var = running_var.astype(acc)
    batch_invstd = 1.0 / np.sqrt(var + eps)

    # Normalize in the accumulation type: for float32 data with a large mean,
    # x - mean with the mean rounded to float32 would be off by up to half an
    # ulp of the mean, a visible fraction of a small spread.
    scale = batch_invstd * weight if weight.size else batch_invstd
    result = (x - _per_channel(batch_mean)) * _per_channel(scale)
    if bias.size:
        result += _per_channel(bias)
    y[...] = result
    mean[...] = batch_mean
    invstd[...] = batch_invstd


def batchnorm_backward(dy, x, weight, mean, invstd, training, dx, dweight, dbias):
    acc = _acc_dtype(x.dtype)
    n = x.shape[0] * x.shape[2]
    xhat = (x - _per_channel(mean)) * _per_channel(invstd)
    sum_dy = dy.sum(axis=(0, 2), dtype=acc)
    sum_dy_xhat = np.einsum("ncs,ncs->c", dy, xhat, dtype=acc)

    scale = invstd * weight if weight.size else invstd
    if training:
        dx[...] = _per_channel(scale) * (dy - _per_channel(sum_dy / n).astype(x.dtype)
                                         - xhat * _per_channel(sum_dy_xhat / n).astype(x.dtype))
    else:
        dx[...] = _per_channel(scale) * dy
    if weight.size:
        dweight[...] = sum_dy_xhat
        dbias[...] = sum_dy
