"""``fastnn.warmup()``: compile every JIT kernel ahead of time.

It calls every public function once per variant a user can reach (both
dtypes; both batch-norm layouts; with and without the optional arrays; every
target kind and reduction; a small size for the serial kernels and a larger
one for the parallel ones), so that the JIT backends compile, and with their
on-disk cache store, every signature.  Later processes then start warm.
"""

import time

import numpy as np

from . import _api, _registry

# (N, C): tiny (whole-layer Linear kernels, serial), small (serial passes
# around BLAS products) and above the parallel threshold.
_SIZES = ((8, 16), (64, 64), (512, 128))


def _calls(dtype, N, C, rng):
    """(function, args, kwargs) for one dtype and size, covering every variant."""
    x2 = rng.standard_normal((N, C)).astype(dtype)
    x4 = rng.standard_normal((max(N // 8, 2), C, 2, 4)).astype(dtype)
    ones, zeros = np.ones(C, dtype), np.zeros(C, dtype)
    for x in (x2, x4):
        for affine in ((None, None), (ones, zeros)):
            for stats in ((None, None), (zeros.copy(), ones.copy())):
                yield _api.batchnorm_forward, (x, *affine, *stats), {}
            y, mean, invstd = _api.batchnorm_forward(x, *affine)
            yield _api.batchnorm_backward, (y, x, affine[0], mean, invstd), {}
            yield (_api.batchnorm_backward, (y, x, affine[0], mean, invstd),
                   {"training": False})
        yield (_api.batchnorm_forward, (x, ones, zeros, zeros.copy(), ones.copy()),
               {"training": False})
    for axis in (-1, 0):
        yield _api.softmax, (x2, axis), {}
        yield _api.log_softmax, (x2, axis), {}
    index = rng.integers(0, C, N)
    probabilities = _api.softmax(x2)
    for target in (index, probabilities):
        for weight in (None, ones):
            for reduction in ("mean", "sum", "none"):
                options = {"weight": weight, "reduction": reduction,
                           "label_smoothing": 0.1}
                yield _api.softmax_cross_entropy, (x2, target), options
                yield _api.softmax_cross_entropy_backward, (x2, target), options
                yield _api.softmax_cross_entropy_with_grad, (x2, target), options
                yield (_api.softmax_cross_entropy_with_grad, (x2.copy(), target),
                       dict(options, out=np.empty_like(x2)))
    w = rng.standard_normal((C, C)).astype(dtype)
    for bias in (None, ones):
        for activation in (None, "relu"):
            y = _api.linear_forward(x2, w, bias, activation=activation)
            yield _api.linear_forward, (x2, w, bias), {"activation": activation}
            for need_dx in (True, False):
                yield (_api.linear_backward, (y, x2, w),
                       {"y": y, "activation": activation, "has_bias": bias is not None,
                        "need_dx": need_dx})


def warmup(backends=None):
    """Compile every kernel of the given (default: every available) backends.

    Returns ``{backend name: seconds taken}``.  With a warm on-disk cache
    this only loads the compiled code.
    """
    names = backends or [n for n, s in _registry.backends().items() if s == "available"]
    timings = {}
    for name in names:
        _registry.module(name)          # RuntimeError now if it is unavailable
        start = time.perf_counter()
        rng = np.random.default_rng(0)
        with _registry.use_backend(name):
            for dtype in (np.float32, np.float64):
                for N, C in _SIZES:
                    for function, args, kwargs in _calls(dtype, N, C, rng):
                        function(*args, **kwargs)
        timings[name] = time.perf_counter() - start
    return timings
