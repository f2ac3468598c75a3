"""Batch-norm semantics a table of samples does not show on its own.

- running statistics on numbers worked out by hand (unbiased variance,
  momentum, counts over N and the spatial axes);
- several training steps compose like PyTorch's;
- evaluation returns the running statistics as mean/invstd and its backward
  is the affine map dx = dy * weight * invstd;
- only the given running statistic is updated, and a strided one in place;
- float32 within its tolerance of float64 on the same data.
"""

import numpy as np
import pytest

import fastnn

from . import oracle
from .support import HAND_COMPUTED as EXACT_ENOUGH
from .support import assert_close, assert_outputs, tolerance


def test_running_statistics_by_hand(backend, dtype):
    # channel 0: 1, 3, 5 -> mean 3, biased var 8/3, unbiased var 4
    # channel 1: 2, 2, 8 -> mean 4, biased var 8,   unbiased var 12
    x = np.array([[1, 2], [3, 2], [5, 8]], dtype)
    running_mean, running_var = np.array([0.0, 10.0], dtype), np.array([1.0, 2.0], dtype)
    y, mean, invstd = fastnn.batchnorm_forward(x, None, None, running_mean, running_var,
                                               momentum=0.25, eps=0.0, backend=backend)
    assert_close(mean, [3, 4], EXACT_ENOUGH, "mean")
    assert_close(invstd, [np.sqrt(3 / 8), np.sqrt(1 / 8)], EXACT_ENOUGH, "invstd")
    assert_close(running_mean, [0.75 * 0 + 0.25 * 3, 0.75 * 10 + 0.25 * 4], EXACT_ENOUGH,
                 "running_mean")
    assert_close(running_var, [0.75 * 1 + 0.25 * 4, 0.75 * 2 + 0.25 * 12], EXACT_ENOUGH,
                 "running_var (unbiased)")
    assert_close(y[:, 0], [-2 * np.sqrt(3 / 8), 0, 2 * np.sqrt(3 / 8)], EXACT_ENOUGH, "y")


def test_running_statistics_count_spatial_values(backend, dtype):
    """(N, C, H, W): the unbiased correction uses n = N*H*W values per channel."""
    x = np.zeros((2, 1, 1, 2), dtype)
    x[:, 0, 0, :] = [[0, 2], [4, 6]]            # mean 3, biased var 5, unbiased 20/3
    running_mean, running_var = np.zeros(1, dtype), np.zeros(1, dtype)
    fastnn.batchnorm_forward(x, None, None, running_mean, running_var, momentum=1.0,
                             backend=backend)
    assert_close(running_mean, [3], EXACT_ENOUGH, "running_mean")
    assert_close(running_var, [20 / 3], EXACT_ENOUGH, "running_var")


def test_training_steps_compose(backend, dtype):
    """k steps on batches b_1..b_k: r_k = (1-m) r_(k-1) + m stat(b_k), as the oracle."""
    rng = np.random.default_rng(31)
    running_mean, running_var = np.zeros(4, dtype), np.ones(4, dtype)
    expected_mean, expected_var = np.zeros(4), np.ones(4)
    for step in range(5):
        x = (step + rng.standard_normal((7, 4, 3))).astype(dtype)
        fastnn.batchnorm_forward(x, None, None, running_mean, running_var, momentum=0.3,
                                 backend=backend)
        oracle.batchnorm_forward(x, running_mean=expected_mean, running_var=expected_var,
                                 momentum=0.3)
    assert_close(running_mean, expected_mean, tolerance(dtype), "running_mean")
    assert_close(running_var, expected_var, tolerance(dtype), "running_var")


@pytest.mark.parametrize("given", ["running_mean", "running_var"])
def test_one_running_statistic(backend, dtype, given):
    """Training with only one running statistic updates that one (PyTorch allows it)."""
    rng = np.random.default_rng(32)
    x = rng.standard_normal((8, 3)).astype(dtype)
    stat = np.ones(3, dtype)
    expected = {"running_mean": np.ones(3), "running_var": np.ones(3)}
    kwargs = {given: stat}
    fastnn.batchnorm_forward(x, **kwargs, backend=backend)
    oracle.batchnorm_forward(x, **{given: expected[given]})
    assert_close(stat, expected[given], tolerance(dtype), given)


def test_running_statistics_strided_views_updated_in_place(backend, dtype):
    """Running statistics that are views (every other element, reversed) are written through."""
    rng = np.random.default_rng(33)
    x = rng.standard_normal((16, 5)).astype(dtype)
    mean_buffer = np.full(10, 7.0, dtype)
    var_buffer = np.full(10, 7.0, dtype)
    running_mean, running_var = mean_buffer[::2], var_buffer[::-2]
    running_mean[:] = 0
    running_var[:] = 1
    fastnn.batchnorm_forward(x, None, None, running_mean, running_var, backend=backend)
    expected_mean, expected_var = np.zeros(5), np.ones(5)
    oracle.batchnorm_forward(x, running_mean=expected_mean, running_var=expected_var)
    assert_close(mean_buffer[::2], expected_mean, tolerance(dtype), "running_mean")
    assert_close(var_buffer[::-2], expected_var, tolerance(dtype), "running_var")
    assert np.all(mean_buffer[1::2] == 7) and np.all(var_buffer[-2::-2] == 7), (
        "wrote outside the view")


@pytest.mark.parametrize("shape", [(9, 4), (3, 4, 5, 2)], ids=str)
def test_evaluation_uses_running_statistics(backend, dtype, shape):
    rng = np.random.default_rng(34)
    c = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    weight, bias = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    running_mean = rng.standard_normal(c).astype(dtype)
    running_var = rng.uniform(0.5, 2, c).astype(dtype)
    before = running_mean.copy(), running_var.copy()
    y, mean, invstd = fastnn.batchnorm_forward(x, weight, bias, running_mean, running_var,
                                               training=False, eps=1e-3, backend=backend)
    assert np.array_equal(mean, running_mean), "mean is the running mean"
    assert_close(invstd, 1 / np.sqrt(running_var.astype(np.float64) + 1e-3), tolerance(dtype))
    assert running_mean.tobytes() == before[0].tobytes()
    assert running_var.tobytes() == before[1].tobytes()
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dweight, dbias = fastnn.batchnorm_backward(dy, x, weight, mean, invstd, training=False,
                                                   backend=backend)
    channel = (1, c) + (1,) * (len(shape) - 2)
    axes = tuple(a for a in range(len(shape)) if a != 1)
    d64, x64 = dy.astype(np.float64), x.astype(np.float64)
    xhat = (x64 - mean.reshape(channel)) * invstd.astype(np.float64).reshape(channel)
    assert_close(dx, d64 * (weight * invstd).astype(np.float64).reshape(channel),
                 tolerance(dtype), "dx = dy * weight * invstd")
    assert_close(dweight, (d64 * xhat).sum(axis=axes), tolerance(dtype), "dweight")
    assert_close(dbias, d64.sum(axis=axes), tolerance(dtype), "dbias")


@pytest.mark.parametrize("shape", [(32, 6), (4, 6, 5, 5), (4, 6, 9)], ids=str)
def test_float32_close_to_float64(backend, shape):
    """The same data in float32 and float64: within the float32 tolerance."""
    rng = np.random.default_rng(35)
    c = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    weight, bias = (rng.standard_normal(c).astype(np.float32) for _ in range(2))
    dy = rng.standard_normal(shape).astype(np.float32)

    def run(dtype):
        cast = [a.astype(dtype) for a in (x, weight, bias, dy)]
        y, mean, invstd = fastnn.batchnorm_forward(*cast[:3], backend=backend)
        grads = fastnn.batchnorm_backward(cast[3], cast[0], cast[1], mean, invstd,
                                          backend=backend)
        return (y, mean, invstd) + grads

    single, double = run(np.float32), run(np.float64)
    assert_outputs(single, tuple(a.astype(np.float64) for a in double), np.float32)


# Shapes that reach every way the fast backends split the work: rows of
# channels in several row blocks and column chunks; channel planes in
# several row blocks, planes longer than a tile, and channels run one at a
# time (with one and with several row blocks per channel).  The tile sizes
# are those of fastnn/_backends/numba/batchnorm.py; every backend runs them.
WORK_SPLITS = {
    "rows-row-blocks": (1024, 300),
    "rows-column-chunks": (200, 1500),
    "planes-row-blocks": (40, 3, 64, 64),
    "planes-chunked": (2, 2, 300, 300),
    "planes-by-channel": (8, 8, 64, 64),
    "planes-by-channel-row-blocks": (64, 8, 48, 48),
}


@pytest.mark.parametrize("shape", WORK_SPLITS.values(), ids=WORK_SPLITS.keys())
def test_every_work_split(backend, dtype, shape):
    """Forward (with running statistics) and backward against the float64 oracle."""
    rng = np.random.default_rng(36)
    c = shape[1]
    channel = (1, c) + (1,) * (len(shape) - 2)
    x = (rng.uniform(-3, 3, c).reshape(channel)
         + rng.uniform(0.5, 3, c).reshape(channel) * rng.standard_normal(shape))
    weight, bias, running_mean = (rng.standard_normal(c) for _ in range(3))
    running_var = rng.uniform(0.5, 2, c)
    dy = rng.standard_normal(shape)
    cast = [a.astype(dtype) for a in (x, weight, bias, running_mean, running_var, dy)]
    x, weight, bias, running_mean, running_var, dy = cast
    expected_mean, expected_var = running_mean.copy(), running_var.copy()

    y, mean, invstd = fastnn.batchnorm_forward(x, weight, bias, running_mean, running_var,
                                               backend=backend)
    expected = oracle.batchnorm_forward(x, weight, bias, expected_mean, expected_var)
    assert_outputs((y, mean, invstd), expected, dtype, "forward")
    assert_close(running_mean, expected_mean, tolerance(dtype), "running_mean")
    assert_close(running_var, expected_var, tolerance(dtype), "running_var")

    grads = fastnn.batchnorm_backward(dy, x, weight, mean, invstd, backend=backend)
    assert_outputs(grads, oracle.batchnorm_backward(dy, x, weight, mean, invstd), dtype,
                   "backward")
