"""Shared helpers of the conformance suite: tolerances, comparisons, snapshots, layouts.

Every tolerance of the suite lives in this file (``TOLERANCE``,
``FINITE_DIFFERENCE``, the numerical-case bounds), each with the reason for
its size, so a reader sees in one place how strict the suite is.
"""

import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np

import fastnn

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

BACKEND_STATUS = fastnn.backends()
AVAILABLE_BACKENDS = [name for name, status in BACKEND_STATUS.items() if status == "available"]
# The backends the parametrized conformance tests run on: every available
# one, or those named in FASTNN_TEST_BACKENDS (comma list; the sanitizer run
# of .ci/run tests only "c").
_ONLY = {name.strip() for name in os.environ.get("FASTNN_TEST_BACKENDS", "").split(",")
         if name.strip()}
TESTED_BACKENDS = [name for name in AVAILABLE_BACKENDS if not _ONLY or name in _ONLY]


# ---------------------------------------------------------------- tolerances

@dataclass(frozen=True)
class Tolerance:
    """|got - expected| <= atol * max|expected| + rtol * |expected|, elementwise.

    atol is scaled by the largest magnitude of the array compared, so one
    tolerance serves a loss summed over a batch and a gradient divided by it;
    entries that cancel to ~0 (batch-norm dx, softmax tails) are judged
    against the scale of their array, not against themselves.
    """
    rtol: float
    atol: float


TOLERANCE = {
    # A float64 backend against the float64 oracle: only the order of
    # summation differs (blocked, pairwise or per-thread partial sums), each
    # step rounding at 1.1e-16.  Reductions here cover up to ~10^4 terms; the
    # worst error measured over every sample and backend was 4e-4 of this
    # allowance (rtol = 450 ulps), so it is loose against rounding and still
    # a billion times tighter than any wrong formula.
    np.dtype(np.float64): Tolerance(rtol=1e-13, atol=2e-14),
    # A float32 backend against the float64 oracle on the same float32
    # inputs: float32 rounds at 6e-8 per step; sums over up to ~10^4 terms in
    # float32 blocks, a vectorized exp/log accurate to a few ulps, and the
    # cancellations covered by the term scales of opinfo.py.  rtol = 84 ulps;
    # the worst measured error was a fifth of this (a 1000-class softmax summed
    # in float32).
    np.dtype(np.float32): Tolerance(rtol=1e-5, atol=4e-6),
}

# Central differences in float64 with step h: truncation error ~h^2 * f''' and
# rounding error ~eps * |f| / h; h = 1e-6 balances them near 1e-10 relative
# for O(1) inputs, so 1e-6 leaves four orders of margin and still catches any
# wrong term (a missing mean or weight factor is an O(1) error).
FINITE_DIFFERENCE_STEP = 1e-6
FINITE_DIFFERENCE = Tolerance(rtol=1e-6, atol=1e-6)

# Batch norm of data with a large mean: float32 x = 1e4 + 0.01 * randn, float64
# x = 1e8 + 0.1 * randn.  float32 data are quantized at ulp(1e4) = 9.8e-4 (a
# tenth of the spread), but the oracle sees the same values, so a stable
# method (two-pass, shifted or Welford sums, float64 accumulation) gets their
# variance to ~1e-5 (float32) or ~1e-9 (float64) relative, while
# E[x^2] - E[x]^2 loses every digit (1e8 against 1e-4; 1e16 against 1e-2).
# y cannot be better than ulp(mean) * invstd (0.05 absolute in float32) when
# x - mean is formed from a rounded mean; its mean and spread still are.
LARGE_MEAN_MEAN_SPREAD_FRACTION = 1e-3
LARGE_MEAN_VARIANCE_RTOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-6}
LARGE_MEAN_Y_SPREAD_RTOL = 1e-2
LARGE_MEAN_Y_MEAN_ATOL = 0.1


# Short sums worked out by hand (test_batchnorm.py): a few float32 roundings.
HAND_COMPUTED = Tolerance(rtol=1e-6, atol=1e-7)

# A constant batch-norm channel (test_numerics.py): y = bias up to the rounding
# of mean * invstd in a folded scale-and-shift form, i.e. a few ulps of that.
CONSTANT_CHANNEL_ULPS = 8


def tolerance(dtype):
    return TOLERANCE[np.dtype(dtype)]


# --------------------------------------------------------------- comparisons

def assert_close(got, expected, tol, what="result", scale=None):
    """got within ``tol`` of expected; nan and +-inf must sit at the same places.

    ``scale`` (default: max |expected|) is what atol is relative to; a test
    whose values may cancel (a matrix product) passes the size of the terms.
    """
    got = np.asarray(got)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    got64 = got.astype(np.float64)
    nan_got, nan_expected = np.isnan(got64), np.isnan(expected)
    assert np.array_equal(nan_got, nan_expected), (
        f"{what}: nan at {np.argwhere(nan_got != nan_expected)[:5].tolist()} differs "
        f"from the expected nan pattern")
    inf_expected = np.isinf(expected)
    assert np.array_equal(np.isinf(got64), inf_expected), f"{what}: inf pattern differs"
    assert np.array_equal(got64[inf_expected], expected[inf_expected]), f"{what}: inf signs differ"
    finite = np.isfinite(expected)
    if not finite.any():
        return
    g, e = got64[finite], expected[finite]
    scale = np.abs(e).max() if scale is None else scale
    error = np.abs(g - e)
    allowed = tol.atol * scale + tol.rtol * np.abs(e)
    worst = int(np.argmax(error - allowed))
    assert np.all(error <= allowed), (
        f"{what}: {int((error > allowed).sum())} of {e.size} values outside "
        f"rtol={tol.rtol:g}, atol={tol.atol:g}*{scale:.3g}; worst got {g[worst]!r}, "
        f"expected {e[worst]!r} (error {error[worst]:.3g}, allowed {allowed[worst]:.3g})")


def assert_outputs(got, expected, dtype, what="result", tol=None, scale=None):
    """Compare a result structure (array, or tuple of arrays and None) with the oracle's.

    Besides the values: every array returned is an ndarray of ``dtype`` (a
    loss reduced to a scalar is a 0-d ndarray, not a Python or NumPy scalar).
    ``scale`` is None, a number, or a tuple of those matching the structure.
    """
    tol = tolerance(dtype) if tol is None else tol
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), (
            f"{what}: expected a tuple of {len(expected)}, got {type(got).__name__}")
        scales = scale if isinstance(scale, tuple) else (scale,) * len(expected)
        for i, (g, e, s) in enumerate(zip(got, expected, scales)):
            assert_outputs(g, e, dtype, f"{what}[{i}]", tol, s)
        return
    if expected is None:
        assert got is None, f"{what}: expected None, got {type(got).__name__}"
        return
    assert type(got) is np.ndarray, f"{what}: expected an ndarray, got {type(got).__name__}"
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert_close(got, expected, tol, what, scale)


def assert_bitwise_equal(a, b, what="result"):
    """Same structure, shapes, dtypes and bytes (nan payloads and -0.0 included)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{what}[{i}]")
        return
    if a is None or b is None:
        assert a is None and b is None, what
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), (
        f"{what}: not bitwise identical (max difference "
        f"{np.nanmax(np.abs(a.astype(np.float64) - b)) if a.size else 0:.3g})")


def arrays_of(value):
    """Every ndarray inside a result structure."""
    if isinstance(value, tuple):
        return [a for item in value for a in arrays_of(item)]
    return [value] if isinstance(value, np.ndarray) else []


# ------------------------------------------------------- finite differences

def finite_difference(loss, array, h=None):
    """dloss/darray by central differences; ``array`` is nudged in place and restored."""
    h = FINITE_DIFFERENCE_STEP if h is None else h
    grad = np.zeros(array.shape)
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array), "finite differences need a contiguous array"
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + h
        plus = loss()
        flat[i] = original - h
        minus = loss()
        flat[i] = original
        grad.flat[i] = (plus - minus) / (2 * h)
    return grad


# ----------------------------------------------------------------- snapshots

def snapshot(kwargs):
    """Copies of every array argument, to prove later that nothing else changed."""
    return {name: np.array(value, copy=True) for name, value in kwargs.items()
            if isinstance(value, np.ndarray)}


def changed_arguments(kwargs, before, allowed=()):
    """Names of array arguments whose bytes differ from the snapshot (bitwise)."""
    return [name for name, copy in before.items()
            if name not in allowed
            and (kwargs[name].shape != copy.shape or kwargs[name].dtype != copy.dtype
                 or kwargs[name].tobytes() != copy.tobytes())]


def copy_kwargs(kwargs):
    """Fresh copies of every array argument (also inside a tuple, as a
    multi-output ``out=``)."""
    def copy(value):
        if isinstance(value, np.ndarray):
            return value.copy()
        if isinstance(value, tuple):
            return tuple(copy(item) for item in value)
        return value
    return {name: copy(value) for name, value in kwargs.items()}


def float64_kwargs(kwargs):
    """The oracle's view of a call: float arrays upcast (exactly) to float64 copies."""
    out = {}
    for name, value in kwargs.items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            value = value.astype(np.float64)
        elif isinstance(value, np.ndarray):
            value = value.copy()
        out[name] = value
    return out


# ------------------------------------------------------------------- layouts

LAYOUTS = ("fortran", "strided", "reversed", "readonly")


def relayout(a, layout):
    """An array with the values of ``a`` in another memory layout.

    fortran   column-major copy;
    strided   a view taking every other element of every axis of a twice
              larger buffer whose gaps hold nan (floats) or an out-of-range
              label (integers), so a kernel that ignores strides reads garbage;
    reversed  a view with negative strides on every axis;
    readonly  a C-contiguous copy with the writeable flag cleared.
    """
    if a.ndim == 0:
        return a.copy()
    if layout == "fortran":
        return np.asfortranarray(a.copy())
    if layout == "strided":
        filler = np.nan if a.dtype.kind == "f" else np.iinfo(a.dtype).max
        buffer = np.full(tuple(2 * n for n in a.shape), filler, dtype=a.dtype)
        view = buffer[(slice(None, None, 2),) * a.ndim]
        view[...] = a
        return view
    if layout == "reversed":
        every_axis = (slice(None, None, -1),) * a.ndim
        return a[every_axis].copy()[every_axis]
    if layout == "readonly":
        copy = np.ascontiguousarray(a).copy()
        copy.flags.writeable = False
        return copy
    raise ValueError(layout)


# ------------------------------------------------------------------ warnings

@contextlib.contextmanager
def no_warnings():
    """Any warning (NumPy's divide/invalid/overflow included) fails the test here.

    pyproject.toml already turns warnings into errors; this makes the tests
    that promise "no warnings" say so themselves and hold without that config.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------- kernel paths

@contextlib.contextmanager
def numba_parallel_calls():
    """Record which of the numba backend's parallel entry points run in the block.

    Yields a list that receives the qualified name of every ``parallel=True``
    entry point called (the backend's Python wrappers look them up as module
    globals, so wrapping those globals sees every call).
    """
    import importlib
    import pkgutil
    import fastnn._backends.numba as package
    from fastnn._backends.numba import _jit
    parallel = {id(d) for d, _ in _jit.ENTRY_POINTS if d.targetoptions.get("parallel")}
    calls, patched = [], []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for attribute, value in list(vars(module).items()):
            if id(value) in parallel:
                def recording(*args, _kernel=value, _name=value.py_func.__qualname__):
                    calls.append(_name)
                    return _kernel(*args)
                setattr(module, attribute, recording)
                patched.append((module, attribute, value))
    try:
        yield calls
    finally:
        for module, attribute, value in patched:
            setattr(module, attribute, value)
