"""Batch normalization, the readable reference.

Shapes: x and y are (N, C, *spatial); statistics are per channel C, taken
over the batch N and every spatial position.  n = N * prod(spatial) is the
number of values per channel.

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
where E[x^2] - E[x]^2 would cancel.  float32 sums are accumulated in float64.
"""

import numpy as np


def _channel_view(a, C):
    """(N, C, *spatial) -> (N, C, S): the reduction axes become 0 and 2."""
    return a.reshape(a.shape[0], C, -1)


def _per_channel(v):
    """(C,) -> (1, C, 1), to broadcast against an (N, C, S) view."""
    return v.reshape(1, -1, 1)


def _acc_dtype(dtype):
    return np.float64 if dtype == np.float32 else dtype


def _into(out, result, dtype):
    """result rounded to dtype: written into the caller's ``out``, or a new array."""
    if out is None:
        return result.astype(dtype, copy=False)
    out[...] = result
    return out


def batchnorm_forward(x, weight, bias, running_mean, running_var,
                      training, momentum, eps, out):
    C = x.shape[1]
    x3 = _channel_view(x, C)
    acc = _acc_dtype(x.dtype)
    if training:
        n = x3.shape[0] * x3.shape[2]
        mean = x3.mean(axis=(0, 2), dtype=acc)
        centered = x3 - _per_channel(mean)
        var = np.einsum("ncs,ncs->c", centered, centered, dtype=acc) / n
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (n / (n - 1))
    else:
        mean = running_mean.astype(acc)
        var = running_var.astype(acc)
    invstd = 1.0 / np.sqrt(var + eps)

    # Normalize in the accumulation type: for float32 data with a large mean,
    # x - mean with the mean rounded to float32 would be off by up to half an
    # ulp of the mean, a visible fraction of a small spread.
    scale = invstd if weight is None else weight * invstd
    y = (x3 - _per_channel(mean)) * _per_channel(scale)
    if bias is not None:
        y += _per_channel(bias)
    return (_into(out, y.reshape(x.shape), x.dtype), mean.astype(x.dtype), invstd.astype(x.dtype))


def batchnorm_backward(dy, x, weight, mean, invstd, training, out):
    C = x.shape[1]
    x3, dy3 = _channel_view(x, C), _channel_view(dy, C)
    acc = _acc_dtype(x.dtype)
    n = x3.shape[0] * x3.shape[2]
    xhat = (x3 - _per_channel(mean)) * _per_channel(invstd)
    dbias = dy3.sum(axis=(0, 2), dtype=acc)
    dweight = np.einsum("ncs,ncs->c", dy3, xhat, dtype=acc)

    scale = invstd if weight is None else weight * invstd
    if training:
        dx = _per_channel(scale) * (dy3 - _per_channel(dbias / n).astype(x.dtype)
                                    - xhat * _per_channel(dweight / n).astype(x.dtype))
    else:
        dx = _per_channel(scale) * dy3
    dx = _into(out, dx.reshape(x.shape), x.dtype)
    if weight is None:
        return dx, None, None
    return dx, dweight.astype(x.dtype), dbias.astype(x.dtype)
