"""Batch normalization entries: forward in training and in evaluation, backward.

x is ``(N, C)`` or ``(N, C, *spatial)``; statistics per channel (axis 1)
over every other axis; E = N*C*S elements, b bytes per element.  The NumPy
baselines below are what a user writes without fastnn (``x.mean``,
``x.var``, broadcasting); forward returns ``(y, mean, invstd)`` and updates
the running statistics in place with the unbiased variance, as PyTorch.

Minimum bytes (STREAM's counting: each array read or written once counts
its size once; per-channel vectors left out)::

    forward, training     3 E b   statistics pass reads x; second pass reads x, writes y
    forward, evaluation   2 E b   reads x, writes y
    backward, training    5 E b   sum(dy), sum(dy*xhat) read dy, x; dx pass reads both, writes dx

The ``out`` variant writes y or dx into a reused buffer: a fresh large
output costs page faults on every call, which the buffer spares.
"""

import numpy as np

from ._kernel import Kernel, MinBytes, elements, normal, shape_size

MOMENTUM = 0.1
EPS = 1e-5

SIZES = (
    shape_size("tiny", (8, 16)),
    shape_size("small", (256, 256)),
    shape_size("medium", (4096, 1024)),
    shape_size("large", (65536, 256)),
    shape_size("tiny-nchw", (2, 8, 4, 4)),
    shape_size("medium-nchw", (32, 64, 56, 56)),
    shape_size("large-nchw", (64, 128, 56, 56)),
)
# The test run's check: more than one 65536-element tile and above 2**15
# elements (the numba kernels' parallel path), and in float64 an output of
# 10.5 MB, beyond the 8 MiB from which y and dx are written with streaming
# stores.
CHECK = shape_size("check", (2048, 640))


def _channel_axes(x):
    """The axes a statistic reduces over, and the broadcast shape of a (C,) vector."""
    return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


# ----------------------------------------------------------------------------
# The idiomatic NumPy baselines

def forward_train_numpy(x, weight, bias, running_mean, running_var):
    axes, shape = _channel_axes(x)
    count = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)                        # biased, two-pass inside NumPy
    invstd = 1.0 / np.sqrt(var + EPS)
    y = (x - mean.reshape(shape)) * invstd.reshape(shape) * weight.reshape(shape) \
        + bias.reshape(shape)
    running_mean *= 1.0 - MOMENTUM
    running_mean += MOMENTUM * mean
    running_var *= 1.0 - MOMENTUM
    running_var += MOMENTUM * var * (count / (count - 1))
    return y, mean, invstd


def forward_eval_numpy(x, weight, bias, running_mean, running_var):
    _, shape = _channel_axes(x)
    invstd = 1.0 / np.sqrt(running_var + EPS)
    y = (x - running_mean.reshape(shape)) * invstd.reshape(shape) * weight.reshape(shape) \
        + bias.reshape(shape)
    return y, running_mean, invstd


def backward_numpy(dy, x, weight, mean, invstd):
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


# ----------------------------------------------------------------------------
# Inputs

def _common_inputs(shape, dtype, rng):
    C = shape[1]
    return {
        "x": normal(rng, shape, dtype, 2.0, 0.5),
        "weight": normal(rng, (C,), dtype, 0.1, 1.0),
        "bias": normal(rng, (C,), dtype, 0.1),
        "out": np.empty(shape, dtype),      # for the "out" variant only
    }


def _train_inputs(shape, dtype, rng):
    inputs = _common_inputs(shape, dtype, rng)
    inputs["running_mean"] = np.zeros(shape[1], dtype)
    inputs["running_var"] = np.ones(shape[1], dtype)
    return inputs


def _eval_inputs(shape, dtype, rng):
    inputs = _common_inputs(shape, dtype, rng)
    inputs["running_mean"] = normal(rng, (shape[1],), dtype, 0.1, 0.5)
    inputs["running_var"] = (rng.random(shape[1]) * 3 + 0.5).astype(dtype)
    return inputs


def _backward_inputs(shape, dtype, rng):
    inputs = _common_inputs(shape, dtype, rng)
    axes = (0,) + tuple(range(2, len(shape)))
    x64 = inputs["x"].astype(np.float64)
    inputs["mean"] = x64.mean(axis=axes).astype(dtype)
    inputs["invstd"] = (1.0 / np.sqrt(x64.var(axis=axes) + EPS)).astype(dtype)
    inputs["dy"] = normal(rng, shape, dtype)
    return inputs


def _forward_arrays(inputs):
    return tuple(inputs[k] for k in ("x", "weight", "bias", "running_mean", "running_var"))


# ----------------------------------------------------------------------------
# fastnn and PyTorch calls

def _train_fastnn(inputs, backend, out):
    import fastnn
    x, w, b, rm, rv = _forward_arrays(inputs)
    return lambda: fastnn.batchnorm_forward(x, w, b, rm, rv, training=True, momentum=MOMENTUM,
                                            eps=EPS, out=out, backend=backend)


def _train_torch(torch, inputs):
    F = torch.nn.functional
    x, w, b, rm, rv = (torch.from_numpy(a) for a in _forward_arrays(inputs))

    def call():
        return F.batch_norm(x, rm, rv, w, b, training=True, momentum=MOMENTUM, eps=EPS)
    return call, lambda y: {"y": y.numpy(), "running_mean": inputs["running_mean"],
                            "running_var": inputs["running_var"]}


def _train_outputs(result, inputs):
    y, mean, invstd = result
    return {"y": y, "mean": mean, "invstd": invstd,
            "running_mean": inputs["running_mean"], "running_var": inputs["running_var"]}


def _eval_fastnn(inputs, backend, out):
    import fastnn
    x, w, b, rm, rv = _forward_arrays(inputs)
    return lambda: fastnn.batchnorm_forward(x, w, b, rm, rv, training=False, eps=EPS, out=out,
                                            backend=backend)


def _eval_torch(torch, inputs):
    F = torch.nn.functional
    x, w, b, rm, rv = (torch.from_numpy(a) for a in _forward_arrays(inputs))
    return (lambda: F.batch_norm(x, rm, rv, w, b, training=False, eps=EPS)), \
        lambda y: {"y": y.numpy()}


def _eval_outputs(result, inputs):
    y, mean, invstd = result
    return {"y": y, "mean": mean, "invstd": invstd}


def _backward_fastnn(inputs, backend, out):
    import fastnn
    dy, x, w, mean, invstd = (inputs[k] for k in ("dy", "x", "weight", "mean", "invstd"))
    return lambda: fastnn.batchnorm_backward(dy, x, w, mean, invstd, training=True, out=out,
                                             backend=backend)


def _backward_torch(torch, inputs):
    # Autograd through F.batch_norm: the forward graph is built once here,
    # and only the backward node runs in the timed call.
    F = torch.nn.functional
    x = torch.from_numpy(inputs["x"]).requires_grad_()
    w = torch.from_numpy(inputs["weight"]).requires_grad_()
    b = torch.from_numpy(inputs["bias"]).requires_grad_()
    dy = torch.from_numpy(inputs["dy"])
    y = F.batch_norm(x, None, None, w, b, training=True, eps=EPS)

    def call():
        return torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)
    return call, lambda r: {"dx": r[0].numpy(), "dweight": r[1].numpy(), "dbias": r[2].numpy()}


def _backward_outputs(result, inputs):
    dx, dweight, dbias = result
    return {"dx": dx, "dweight": dweight, "dbias": dbias}


KERNELS = (
    Kernel(
        name="batchnorm_forward_train", family="batchnorm", api="batchnorm_forward",
        title="batch norm forward, training (batch statistics + running-stat update)",
        sizes=SIZES, quick=("tiny", "medium", "large", "medium-nchw"), check_size=CHECK,
        inputs=_train_inputs, numpy=forward_train_numpy, fastnn=_train_fastnn,
        torch=_train_torch, outputs=_train_outputs,
        cost=MinBytes("3 E b", lambda shape, b: 3 * elements(shape) * b),
        mutable=("running_mean", "running_var", "out"), variants=("out",)),
    Kernel(
        name="batchnorm_forward_eval", family="batchnorm", api="batchnorm_forward",
        title="batch norm forward, evaluation (running statistics)",
        sizes=SIZES, quick=("tiny", "large"), check_size=CHECK,
        inputs=_eval_inputs, numpy=forward_eval_numpy, fastnn=_eval_fastnn,
        torch=_eval_torch, outputs=_eval_outputs,
        cost=MinBytes("2 E b", lambda shape, b: 2 * elements(shape) * b),
        mutable=("out",), variants=("out",)),
    Kernel(
        name="batchnorm_backward", family="batchnorm", api="batchnorm_backward",
        title="batch norm backward, training (through the batch statistics)",
        sizes=SIZES, quick=("tiny", "medium", "large", "medium-nchw"), check_size=CHECK,
        inputs=_backward_inputs, numpy=backward_numpy, fastnn=_backward_fastnn,
        torch=_backward_torch, outputs=_backward_outputs,
        cost=MinBytes("5 E b", lambda shape, b: 5 * elements(shape) * b),
        mutable=("out",), variants=("out",)),
)
