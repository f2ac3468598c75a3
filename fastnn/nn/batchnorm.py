"""``BatchNorm``: batch normalization of (N, C) and (N, C, *spatial) inputs.

Per channel c (axis 1), over the batch and the spatial positions:
    y = (x - mean) / sqrt(var + eps) * weight + bias
with the batch's mean and biased variance in training, the running
statistics in evaluation.  Training moves the running statistics toward the
batch's (the unbiased variance), ``r = (1 - momentum) * r + momentum * stat``.
Forward keeps ``input``, ``mean`` and ``invstd`` (what the backward needs)
and whether the batch's statistics were used; backward gives dx through
them and sets ``weight.grad`` (dγ) and ``bias.grad`` (dβ).  One
``batchnorm_forward`` and one ``batchnorm_backward`` call each.

The course's exponentially weighted average ``r = β r + (1 - β) stat`` is
this with β = 1 - momentum: the default momentum 0.1 is β = 0.9, and Keras'
``BatchNormalization(momentum=0.99)`` is fastnn's ``momentum=0.01``.

Test: tests/test_nn_layers.py (against torch.nn.BatchNorm1d/2d and finite
differences).
"""

import numpy as np

import fastnn

from .linear import float_dtype, positive_int
from .module import Module, Parameter, check_grad_output, check_input


class BatchNorm(Module):
    """Batch normalization over axis 1, ``torch.nn.BatchNorm1d/2d/3d``'s twin.

    ``weight`` (γ) starts at 1 and ``bias`` (β) at 0 (``affine=False``: no
    parameters, y is the normalized x); ``running_mean`` at 0,
    ``running_var`` at 1 and ``num_batches_tracked`` at 0.
    ``momentum=None`` makes the running statistics the cumulative average of
    every batch seen (momentum 1 / num_batches_tracked), as PyTorch.
    ``track_running_stats=False`` keeps no running statistics and normalizes
    with the batch's statistics in evaluation too.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32):
        super().__init__()
        self.num_features = positive_int("num_features", num_features)
        self.eps = _real("eps", eps, 0.0, None)
        self.momentum = None if momentum is None else _real("momentum", momentum, 0.0, 1.0)
        for name, value in (("affine", affine), ("track_running_stats", track_running_stats)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name}: expected True or False, got {value!r}")
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.dtype = float_dtype(dtype)
        C = self.num_features
        self.weight = Parameter(np.ones(C, self.dtype)) if self.affine else None
        self.bias = Parameter(np.zeros(C, self.dtype)) if self.affine else None
        if self.track_running_stats:
            self.running_mean = np.zeros(C, self.dtype)
            self.running_var = np.ones(C, self.dtype)
            self.num_batches_tracked = np.zeros((), np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        # Saved by forward for backward.
        self.input = self.output = self.mean = self.invstd = None
        self.batch_statistics = True
        self._buffers = {}          # reused output arrays, by role (inside a Sequential)

    def _own_parameters(self):
        return [("weight", self.weight), ("bias", self.bias)] if self.affine else []

    def _own_buffers(self):
        if not self.track_running_stats:
            return []
        return [("running_mean", self.running_mean), ("running_var", self.running_var),
                ("num_batches_tracked", self.num_batches_tracked)]

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}, "
                f"dtype={self.dtype}")

    def _reused(self, role, like):
        """A buffer of ``like``'s shape and dtype kept between calls."""
        buffer = self._buffers.get(role)
        if buffer is None or buffer.shape != like.shape:
            buffer = self._buffers[role] = np.empty(like.shape, like.dtype)
        return buffer

    def forward(self, x):
        return self._forward(x, reuse=False)

    def _forward(self, x, reuse):
        C = self.num_features
        x = check_input("x", x, self.dtype, 2, 32, 1, C, f"(N, {C}) or (N, {C}, *spatial)")
        weight = self.weight.data if self.affine else None
        bias = self.bias.data if self.affine else None
        batch_statistics = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        momentum = self.momentum if self.momentum is not None else 0.0
        if update and self.momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked + 1)
        running = (self.running_mean, self.running_var) if (
            update or not batch_statistics) else (None, None)
        y, mean, invstd = fastnn.batchnorm_forward(
            x, weight, bias, *running, training=batch_statistics, momentum=momentum,
            eps=self.eps, out=self._reused("y", x) if reuse else None)
        if update:
            self.num_batches_tracked += 1
        self.input, self.output, self.mean, self.invstd = x, y, mean, invstd
        self.batch_statistics = batch_statistics
        return y

    def backward(self, grad_output):
        return self._backward(grad_output, reuse=False)

    def _backward(self, grad_output, reuse):
        dy = check_grad_output(grad_output, self.output, "BatchNorm")
        dx, dweight, dbias = fastnn.batchnorm_backward(
            dy, self.input, self.weight.data if self.affine else None, self.mean,
            self.invstd, training=self.batch_statistics,
            out=self._reused("dx", dy) if reuse else None)
        if self.affine:
            self.weight.grad, self.bias.grad = dweight, dbias
        return dx


def _real(name, value, low, high):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating,
                                                                      np.integer)):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    if not (value >= low and (high is None or value <= high)):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected a value {bounds}, got {value!r}")
    return value
