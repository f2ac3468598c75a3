"""The numba backend's vectorizable exp (fastnn/_backends/numba/_vexp.py).

Its softmax and cross-entropy kernels rest on it, so it is checked on its
own: at most ~1.1 ulp from the correctly rounded exp over its whole range,
x <= 0 (a dense grid plus random points; float64 measured against long
double), exact 0 below the underflow threshold and for -inf, NaN passed
through, and the subnormal range within one unit of the smallest subnormal.
"""

import numpy as np
import pytest

from .support import AVAILABLE_BACKENDS

if "numba" not in AVAILABLE_BACKENDS:
    pytest.fail("numba backend unavailable (test_required_backend_is_available says why)",
                pytrace=False)

import numba  # noqa: E402

from fastnn._backends.numba import _vexp  # noqa: E402


@numba.njit
def _apply(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _vexp.vexp_nonpositive(x[i])
    return out


# Per dtype: (lowest input with a nonzero result, long double or float64
# reference type, documented bound in ulps).
RANGES = {
    np.float32: (-104.0, np.float64, 1.06),
    np.float64: (-745.2, np.longdouble, 1.10),
}


def _inputs(dtype, low):
    rng = np.random.default_rng(41)
    grid = np.linspace(low, 0.0, 400_001)
    near_zero = np.linspace(-1.0, 0.0, 100_001)
    random = rng.uniform(low, 0.0, 200_000)
    return np.concatenate([grid, near_zero, random]).astype(dtype)


def _ulps(got, x, reference_type, dtype):
    """|got - exp(x)| in units of the last place of the correctly rounded result."""
    exact = np.exp(x.astype(reference_type))
    rounded = exact.astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    unit = np.maximum(np.spacing(np.abs(rounded)), tiny).astype(reference_type)
    return np.abs(got.astype(reference_type) - exact) / unit


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_accuracy(dtype):
    low, reference_type, bound = RANGES[dtype]
    if np.finfo(reference_type).nmant <= np.finfo(dtype).nmant:
        pytest.skip("no wider float type for the float64 reference on this platform")
    x = _inputs(dtype, low)
    got = _apply(x)
    normal = np.abs(got) >= np.finfo(dtype).tiny
    ulps = _ulps(got[normal], x[normal], reference_type, dtype)
    assert ulps.max() <= bound, f"{ulps.max():.3f} ulp at x = {x[normal][ulps.argmax()]!r}"
    # Subnormal results: within one unit of the smallest subnormal.
    sub = ~normal
    exact = np.exp(x[sub].astype(reference_type))
    tiny = np.finfo(dtype).smallest_subnormal
    assert np.all(np.abs(got[sub].astype(reference_type) - exact) <= tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_special_values(dtype):
    x = np.array([-np.inf, -1e4, -800.0, 0.0, -0.0, np.nan], dtype)
    got = _apply(x)
    assert got[0] == 0 and got[1] == 0 and got[2] == 0, got
    assert got[3] == 1 and got[4] == 1, got
    assert np.isnan(got[5])
