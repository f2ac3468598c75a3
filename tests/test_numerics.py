"""Numerical edge cases: where a formula that is right on paper fails in floating point.

- batch-norm variance of data whose mean is large against its spread
  (float32 x = 1e4 + 0.01 * randn; float64 x = 1e6 + 1e-3 * randn), at sizes
  below and above the parallel threshold: E[x^2] - E[x]^2 would lose it all;
- a constant channel (variance exactly 0): y = bias, never nan;
- logits of +-1e4 and beyond (+-1e30 float32, +-1e300 float64): no overflow;
- -inf logits (masking) in classes that are not the target: finite loss and
  gradient, gradient exactly 0 there; the same for probability targets with
  probability 0 there (a deliberate difference from PyTorch, which gives nan);
- every target ignored: the mean is nan, the gradient 0, as PyTorch's.
None of these may warn (``support.no_warnings``).
"""

import numpy as np
import pytest

import fastnn

from . import oracle
from .support import (
    CONSTANT_CHANNEL_ULPS,
    LARGE_MEAN_MEAN_SPREAD_FRACTION,
    LARGE_MEAN_VARIANCE_RTOL,
    LARGE_MEAN_Y_MEAN_ATOL,
    LARGE_MEAN_Y_SPREAD_RTOL,
    Tolerance,
    assert_close,
    assert_outputs,
    no_warnings,
    tolerance,
)

# ---------------------------------------------------------------- batch norm

LARGE_MEAN = {np.dtype(np.float32): (1e4, 1e-2), np.dtype(np.float64): (1e8, 1e-1)}


# The "parallel" shapes exceed the numba kernels' parallel threshold and hold
# several 65536-element work tiles (asserted below when threads are available).
@pytest.mark.parametrize("shape", [(512, 8), (40000, 8), (16, 4, 16, 16), (64, 4, 32, 32)],
                         ids=["NC", "NC-parallel", "NCHW", "NCHW-parallel"])
def test_batchnorm_large_mean(backend, dtype, shape):
    center, spread = LARGE_MEAN[dtype]
    rng = np.random.default_rng(21)
    x = (center + spread * rng.standard_normal(shape)).astype(dtype)
    c = shape[1]
    running_mean, running_var = np.zeros(c, dtype), np.ones(c, dtype)
    reference_mean, reference_var = np.zeros(c), np.ones(c)
    _, mean_expected, invstd_expected = oracle.batchnorm_forward(
        x, running_mean=reference_mean, running_var=reference_var)
    with no_warnings(), _parallel_calls(backend) as calls:
        y, mean, invstd = fastnn.batchnorm_forward(x, None, None, running_mean, running_var,
                                                   backend=backend)
    if "parallel" in shape_id(shape) and backend == "numba" and _threads() > 1:
        assert calls, "the parallel-size case ran the serial kernel"
    # y element by element, as tight as any other float result: the kernel
    # must get the mean and variance right to the last few bits, for float64
    # at mean 1e8 against a spread of 0.1 too.
    y_expected = oracle.batchnorm_forward(x)[0]
    assert_close(y, y_expected, tolerance(dtype), "y")
    variance_tol = Tolerance(rtol=LARGE_MEAN_VARIANCE_RTOL[dtype], atol=0)
    # The mean within two roundings of a number of that size plus 0.1% of the
    # spread (a summation error the variance and y would not notice).
    mean_atol = 2 * np.spacing(dtype.type(center)) + LARGE_MEAN_MEAN_SPREAD_FRACTION * spread
    assert_close(mean, mean_expected, Tolerance(rtol=0, atol=1), "mean", scale=mean_atol)
    assert_close(invstd, invstd_expected, variance_tol, "invstd")
    assert_close(running_var, reference_var, variance_tol, "running_var")
    assert_close(running_mean, reference_mean, tolerance(dtype), "running_mean")
    # y = (x - mean) * invstd has mean 0 and spread sqrt(var / (var + eps)).
    per_channel = np.moveaxis(y.astype(np.float64), 1, -1).reshape(-1, c)
    assert np.all(np.abs(per_channel.mean(axis=0)) < LARGE_MEAN_Y_MEAN_ATOL), "y is not centred"
    assert_close(per_channel.std(axis=0), np.sqrt(1 - 1e-5 * invstd_expected ** 2),
                 Tolerance(rtol=LARGE_MEAN_Y_SPREAD_RTOL, atol=0), "spread of y")


def shape_id(shape):
    return {(40000, 8): "parallel", (64, 4, 32, 32): "parallel"}.get(tuple(shape), "")


def _threads():
    import numba
    return numba.get_num_threads()


def _parallel_calls(backend):
    import contextlib
    if backend != "numba":
        return contextlib.nullcontext([])
    from .support import numba_parallel_calls
    return numba_parallel_calls()


@pytest.mark.parametrize("shape", [(8, 3), (4096, 8), (2, 3, 4, 4)], ids=str)
def test_batchnorm_constant_channel(backend, dtype, shape):
    """Zero variance: invstd = 1/sqrt(eps) and y = bias, never nan.

    Values are multiples of 1/8 and counts powers of 2, so any summation
    order gives the mean exactly; y is then bias up to the rounding of
    mean * invstd (a fused scale-and-shift form rounds there).
    """
    rng = np.random.default_rng(22)
    c = shape[1]
    channel = (1, c) + (1,) * (len(shape) - 2)
    values = rng.integers(-16, 17, c) / 8
    x = np.broadcast_to(values.reshape(channel), shape).astype(dtype)
    weight, bias = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    running_mean, running_var = np.zeros(c, dtype), np.ones(c, dtype)
    with no_warnings():
        y, mean, invstd = fastnn.batchnorm_forward(x, weight, bias, running_mean, running_var,
                                                   eps=1e-5, backend=backend)
    invstd_expected = 1 / np.sqrt(1e-5)
    assert_close(mean, values, Tolerance(rtol=0, atol=0), "mean")
    assert_close(invstd, np.full(c, invstd_expected), tolerance(dtype), "invstd")
    assert_close(running_var, np.full(c, 0.9), tolerance(dtype), "running_var")
    rounding = np.abs(values * invstd_expected * weight).max() + np.abs(bias).max()
    assert_close(y, np.broadcast_to(bias.reshape(channel), shape),
                 Tolerance(rtol=0, atol=CONSTANT_CHANNEL_ULPS * np.finfo(dtype).eps), "y",
                 scale=rounding)
    # The backward: x - mean is exactly 0, so dweight = sum(dy * xhat) is exactly
    # 0, dbias = sum(dy) exact (multiples of 1/8, power-of-2 counts), and
    # dx = weight * invstd * (dy - mean(dy)) to the rounding of that product.
    dy = (rng.integers(-16, 17, shape) / 8).astype(dtype)
    with no_warnings():
        dx, dweight, dbias = fastnn.batchnorm_backward(dy, x, weight, mean, invstd,
                                                       backend=backend)
    axes = tuple(a for a in range(len(shape)) if a != 1)
    assert np.array_equal(dweight, np.zeros(c, dtype)), "dweight"
    assert np.array_equal(dbias, dy.astype(np.float64).sum(axis=axes)), "dbias"
    k1 = (weight.astype(np.float64) * invstd).reshape(channel)
    dx_expected = k1 * (dy - dy.astype(np.float64).mean(axis=axes, keepdims=True))
    assert_close(dx, dx_expected, Tolerance(rtol=0, atol=CONSTANT_CHANNEL_ULPS
                                            * np.finfo(dtype).eps), "dx",
                 scale=np.abs(k1).max() * np.abs(dy).max())


# ------------------------------------------------------------------- softmax

def extreme_logits(dtype, n, c, magnitude, seed=23):
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n, c))
    return (magnitude * signs + rng.standard_normal((n, c))).astype(dtype)


MAGNITUDES = {np.dtype(np.float32): (1e4, 1e30), np.dtype(np.float64): (1e4, 1e300)}


@pytest.mark.parametrize("which", [0, 1], ids=["1e4", "beyond"])
@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_softmax_extreme(backend, dtype, function, which):
    magnitude = MAGNITUDES[dtype][which]
    for shape, axis in (((8, 10), -1), ((10, 8), 0), ((64, 600), -1)):
        x = extreme_logits(dtype, *shape, magnitude)
        with no_warnings():
            got = getattr(fastnn, function)(x, axis, backend=backend)
        assert np.all(np.isfinite(got))
        assert_outputs(got, getattr(oracle, function)(x, axis), dtype, f"{shape}")


@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_softmax_minus_inf(backend, dtype, function):
    """-inf entries give probability 0 (log-probability -inf); the rest is unchanged."""
    rng = np.random.default_rng(24)
    for shape, axis in (((8, 10), -1), ((10, 8), 0), ((64, 600), -1)):
        x = (3 * rng.standard_normal(shape)).astype(dtype)
        x[rng.random(shape) < 0.3] = -np.inf
        np.moveaxis(x, axis, -1)[..., 0] = 1.0            # one finite entry per softmax
        with no_warnings():
            got = getattr(fastnn, function)(x, axis, backend=backend)
        assert_outputs(got, getattr(oracle, function)(x, axis), dtype, f"{shape}")


# ------------------------------------------------------------ cross-entropy

CE_OPTIONS = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(weight=True),
    dict(weight=True, ignore=True, reduction="none"),
]


def _ce_options(options, c, dtype, rng):
    options = dict(options)
    if options.pop("weight", False):
        options["weight"] = rng.uniform(0.2, 2, c).astype(dtype)
    return options, options.pop("ignore", False)


def _ce_check(logits, target, options, backend, dtype):
    """Loss and gradient by all three functions, finite and as the oracle's."""
    expected_loss = oracle.softmax_cross_entropy(logits, target, **options)
    grad_loss = np.ones(len(logits), dtype) if options.get("reduction") == "none" else 1.0
    expected_grad = oracle.softmax_cross_entropy_backward(logits, target, grad_loss, **options)
    with no_warnings():
        loss = fastnn.softmax_cross_entropy(logits, target, **options, backend=backend)
        grad = fastnn.softmax_cross_entropy_backward(logits, target, grad_loss, **options,
                                                     backend=backend)
        fused_loss, fused_grad = fastnn.softmax_cross_entropy_with_grad(
            logits, target, **options, backend=backend)
    for what, value in (("loss", loss), ("fused loss", fused_loss)):
        assert np.all(np.isfinite(value)), what
        assert_outputs(value, expected_loss, dtype, what)
    for what, value in (("gradient", grad), ("fused gradient", fused_grad)):
        assert np.all(np.isfinite(value)), what
        assert_outputs(value, expected_grad, dtype, what)
    return grad, fused_grad


@pytest.mark.parametrize("options", CE_OPTIONS, ids=lambda o: "-".join(o) or "mean")
@pytest.mark.parametrize("which", [0, 1], ids=["1e4", "beyond"])
@pytest.mark.parametrize("n, c", [(16, 7), (64, 600)])
def test_cross_entropy_extreme_logits(backend, dtype, n, c, which, options):
    rng = np.random.default_rng(25)
    logits = extreme_logits(dtype, n, c, MAGNITUDES[dtype][which])
    options, ignore = _ce_options(options, c, dtype, rng)
    target = rng.integers(0, c, n)
    if ignore:
        target[::3] = -100
    _ce_check(logits, target, options, backend, dtype)
    _ce_check(logits, target, dict(options, label_smoothing=0.1), backend, dtype)


@pytest.mark.parametrize("options", CE_OPTIONS, ids=lambda o: "-".join(o) or "mean")
@pytest.mark.parametrize("n, c", [(16, 7), (64, 600)])
def test_cross_entropy_minus_inf_masking(backend, dtype, n, c, options):
    """-inf logits away from the target: finite loss, gradient exactly 0 there."""
    rng = np.random.default_rng(26)
    logits = (3 * rng.standard_normal((n, c))).astype(dtype)
    target = rng.integers(0, c, n)
    masked = rng.random((n, c)) < 0.4
    masked[np.arange(n), target] = False
    logits[masked] = -np.inf
    options, ignore = _ce_options(options, c, dtype, rng)
    if ignore:
        target[::3] = -100                 # ignored rows may hold -inf anywhere
        logits[::3, 0] = -np.inf
        masked[::3, 0] = True
    for grad in _ce_check(logits, target, options, backend, dtype):
        assert np.all(grad[masked] == 0), "gradient at a -inf logit"


@pytest.mark.parametrize("options", CE_OPTIONS[:4], ids=lambda o: "-".join(o) or "mean")
@pytest.mark.parametrize("n, c", [(16, 7), (64, 600)])
def test_cross_entropy_minus_inf_zero_probability(backend, dtype, n, c, options):
    """Probability targets: a class with probability 0 adds 0 even at a -inf logit."""
    rng = np.random.default_rng(27)
    logits = (3 * rng.standard_normal((n, c))).astype(dtype)
    masked = rng.random((n, c)) < 0.4
    masked[:, 0] = False
    probabilities = rng.dirichlet(np.ones(c), n)
    probabilities[masked] = 0.0
    probabilities = (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(dtype)
    logits[masked] = -np.inf
    options, _ = _ce_options(options, c, dtype, rng)
    for grad in _ce_check(logits, probabilities, options, backend, dtype):
        assert np.all(grad[masked] == 0), "gradient at a -inf logit"


@pytest.mark.parametrize("weight", [False, True], ids=["no-weight", "weight"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_every_target_ignored(backend, dtype, label_smoothing, weight):
    """As PyTorch: mean is nan (0/0), sum 0, none zeros; the gradient is 0; no warning."""
    rng = np.random.default_rng(28)
    logits = rng.standard_normal((6, 4)).astype(dtype)
    target = np.full(6, -100)
    options = dict(label_smoothing=label_smoothing,
                   weight=rng.uniform(0.5, 2, 4).astype(dtype) if weight else None)
    with no_warnings():
        for reduction, expected in (("mean", np.nan), ("sum", 0.0), ("none", np.zeros(6))):
            loss = fastnn.softmax_cross_entropy(logits, target, reduction=reduction,
                                                **options, backend=backend)
            fused_loss, fused_grad = fastnn.softmax_cross_entropy_with_grad(
                logits, target, reduction=reduction, **options, backend=backend)
            grad = fastnn.softmax_cross_entropy_backward(
                logits, target, np.ones(6, dtype) if reduction == "none" else 1.0,
                reduction=reduction, **options, backend=backend)
            for what, value in (("loss", loss), ("fused loss", fused_loss)):
                assert_outputs(value, np.asarray(expected), dtype, f"{reduction} {what}")
            for what, value in (("gradient", grad), ("fused gradient", fused_grad)):
                assert_outputs(value, np.zeros((6, 4)), dtype, f"{reduction} {what}")
