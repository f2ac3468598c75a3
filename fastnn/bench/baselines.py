"""The idiomatic NumPy baseline: what a user writes without fastnn.

Every benchmark speedup is measured against these functions, so they are
written the way a competent NumPy user would write them (``x.mean(0)``,
``x.var(0)``, ``np.exp``, ``x @ w.T + b``), not tuned: no ``out=`` buffers,
no in-place tricks, no Numba.  They are also the bench's correctness oracle:
evaluated in float64 on the same inputs, they give the reference outputs
every contender is checked against before it is timed.

Dimension letters: N batch, C channels (batch norm) or classes
(cross-entropy), S the product of batch-norm spatial dimensions, K input and
M output features of a Linear layer.

- batch norm: ``x`` is ``(N, C)`` or ``(N, C, *spatial)``; statistics per
  channel over every other axis; forward returns ``(y, mean, invstd)`` and
  updates the running statistics in place (unbiased variance, as PyTorch).
- cross-entropy: ``logits`` ``(N, C)``, integer ``target`` ``(N,)``, mean
  reduction; the gradient is ``(softmax(logits) - onehot(target)) / N``.
- Linear: ``y = relu?(x @ weight.T + bias)`` with ``weight`` ``(M, K)``.
"""

import numpy as np


def _channel_axes(x):
    """The axes a batch-norm statistic reduces over, and the broadcast shape of a (C,) vector."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return axes, shape


def batchnorm_forward_train(x, weight, bias, running_mean, running_var, momentum, eps):
    axes, shape = _channel_axes(x)
    count = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)                        # biased, two-pass inside NumPy
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean.reshape(shape)) * invstd.reshape(shape) * weight.reshape(shape) \
        + bias.reshape(shape)
    running_mean *= 1.0 - momentum
    running_mean += momentum * mean
    running_var *= 1.0 - momentum
    running_var += momentum * var * (count / (count - 1))
    return y, mean, invstd


def batchnorm_forward_eval(x, weight, bias, running_mean, running_var, eps):
    _, shape = _channel_axes(x)
    invstd = 1.0 / np.sqrt(running_var + eps)
    y = (x - running_mean.reshape(shape)) * invstd.reshape(shape) * weight.reshape(shape) \
        + bias.reshape(shape)
    return y, running_mean, invstd


def batchnorm_backward_train(dy, x, weight, mean, invstd):
    # With xhat = (x - mean) * invstd and y = weight * xhat + bias:
    #   dbias = sum dy,  dweight = sum dy * xhat,
    #   dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
    axes, shape = _channel_axes(x)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    dbias = dy.sum(axis=axes)
    dweight = (dy * xhat).sum(axis=axes)
    count = x.size // x.shape[1]
    dx = (weight * invstd).reshape(shape) * (
        dy - (dbias / count).reshape(shape) - xhat * (dweight / count).reshape(shape))
    return dx, dweight, dbias


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(logits, target):
    logp = _log_softmax(logits)
    return -logp[np.arange(len(target)), target].mean()


def cross_entropy_backward(logits, target):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    grad = exp / exp.sum(axis=1, keepdims=True)
    grad[np.arange(len(target)), target] -= 1.0
    grad /= len(target)
    return grad


def cross_entropy_with_grad(logits, target):
    """Loss and gradient sharing one softmax, as a user would fuse them by hand."""
    rows = np.arange(len(target))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = (np.log(total[:, 0]) - shifted[rows, target]).mean()
    grad = exp / total
    grad[rows, target] -= 1.0
    grad /= len(target)
    return loss, grad


def linear_forward(x, weight, bias, relu):
    y = x @ weight.T + bias
    return np.maximum(y, 0) if relu else y


def linear_backward(dy, x, weight, y, relu):
    if relu:
        dy = dy * (y > 0)
    return dy @ weight, dy.T @ x, dy.sum(axis=0)
