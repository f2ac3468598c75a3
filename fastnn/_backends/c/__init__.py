"""The C backend: the kernels of ``kernels/`` compiled with cffi.

The compiled module ``fastnn._backends.c._fastnn_c`` is built by the install
(``setup.py``, ``_build.py``) when a C compiler is present; without it this
module raises ImportError with the reason and the fix, and
``fastnn.backends()["c"]`` shows it.  The kernels rely on the contract's
checks done by the public API (``fastnn/_backends/__init__.py``); this
module only turns each call into one call of ``kernels/fastnn.h``.

Per call, as little as possible crosses the boundary: every array goes as
the address of its NumPy object (``id``), from which the C side reads the
data pointer and shape (kernels/dispatch.c explains how that is checked at
load); the dtype is ``itemsize >> 3`` (0 float32, 1 float64); options are
ints and floats.  No cffi object is made per call.  cffi's API mode releases
the GIL during every call.

Set at load: the instruction-set variant (AVX-512, AVX2+FMA or baseline,
the best the CPU has; ``FASTNN_C_ISA`` forces one), the cache size that
decides streaming stores and channel-at-a-time batch norm
(``fastnn/_machine.py``), and the thread count (``fastnn.set_num_threads``).
The matrix products of the Linear layer run in NumPy's BLAS (``matmul``
with ``out=``); C runs the bias, ReLU and bias-gradient passes around them.
"""

import os
from pathlib import Path

import numpy as np

from ... import _machine, _registry

# Idle OpenMP threads sleep instead of spinning (a BLAS product right after
# a kernel would lose a core to them), unless the user chose a policy; read
# when the OpenMP runtime starts, so before the extension loads.
_registry.request_sleeping_threads()

_HERE = Path(__file__).resolve().parent

try:
    from ._fastnn_c import ffi, lib
except ImportError as exc:
    recorded = _HERE / "_build_error.txt"
    why = (f"its build failed ({recorded.read_text().strip()[:500]})" if recorded.exists()
           else "the C kernels are not built (no compiled module fastnn._backends.c._fastnn_c)")
    raise ImportError(f"{why}; fix: install a C compiler (gcc or clang) and reinstall "
                      "fastnn (pip install . or pip install -e .); FASTNN_REQUIRE_C=1 makes "
                      "a failed build an error that shows the compiler's output") from exc

ISAS = ("avx512", "avx2", "baseline")


def _set_up():
    probe = np.empty((3, 5), np.float32)
    if lib.fnn_setup(id(probe), probe.ctypes.data, probe.ndim, *probe.shape) != 0:
        raise ImportError("this NumPy's array objects do not have the layout the C kernels "
                          "read (data pointer, dimensions, extents); fix: use NumPy >= 1.26 "
                          "on CPython, or another backend")
    requested = os.environ.get("FASTNN_C_ISA", "auto") or "auto"
    code = lib.fnn_select_isa(requested.encode())
    if code == 1:
        raise ImportError(f"FASTNN_C_ISA: expected one of 'auto', "
                          f"{', '.join(map(repr, ISAS))}, got {requested!r}")
    if code == 2:
        raise ImportError(f"FASTNN_C_ISA={requested}: this CPU lacks it (it has "
                          f"{supported_isas()}); fix: unset FASTNN_C_ISA or pick one of those")
    lib.fnn_set_cache_bytes(_machine.caches().last_level)
    lib.fnn_set_num_threads(_registry.get_num_threads())


def supported_isas():
    """The variants this CPU can run, best first, e.g. ``"avx512,avx2,baseline"``."""
    return ffi.string(lib.fnn_supported_isas()).decode()


def info():
    """What ``python -m fastnn info`` shows for this backend."""
    version = lib.fnn_openmp_version()
    return {
        "isa": ffi.string(lib.fnn_isa_name()).decode(),
        "isas supported": supported_isas(),
        "openmp": (f"yes (_OPENMP {version}, OMP_WAIT_POLICY="
                   f"{os.environ.get('OMP_WAIT_POLICY', '')})"
                   if version else "no (single-threaded build)"),
        "threads": lib.fnn_get_num_threads() if version else 1,
        "build flags": ffi.string(lib.fnn_build_flags()).decode(),
        "streaming stores from": f"{_machine.caches().last_level + 1} bytes touched",
    }


_set_up()


def set_num_threads(n):
    """Called by ``fastnn.set_num_threads``; every later call uses n threads."""
    lib.fnn_set_num_threads(n)


def _ok(code, kernel):
    if code:
        raise MemoryError(f"{kernel}: the C kernel could not allocate its scratch memory")


# --- the backend's kernels (contract in fastnn/_backends/__init__.py) ----------

_bn_forward = lib.fnn_batchnorm_forward
_bn_backward = lib.fnn_batchnorm_backward
_softmax = lib.fnn_softmax
_ce = lib.fnn_cross_entropy
_bias_relu = lib.fnn_bias_relu
_relu_mask_dbias = lib.fnn_relu_mask_dbias
_sgd = lib.fnn_sgd_step
_adam = lib.fnn_adam_step
_REDUCTION = {"none": 0, "sum": 1, "mean": 2}


def batchnorm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                      y, mean, invstd):
    if _bn_forward(id(x), id(weight), id(bias), id(running_mean), id(running_var), id(y),
                   id(mean), id(invstd), x.itemsize >> 3, 1 if training else 0,
                   momentum, eps):
        _ok(1, "batchnorm_forward")


def batchnorm_backward(dy, x, weight, mean, invstd, training, dx, dweight, dbias):
    if _bn_backward(id(dy), id(x), id(weight), id(mean), id(invstd), id(dx), id(dweight),
                    id(dbias), x.itemsize >> 3, 1 if training else 0):
        _ok(1, "batchnorm_backward")


def softmax(x, y):
    _ok(_softmax(id(x), id(y), x.itemsize >> 3, 0), "softmax")


def log_softmax(x, y):
    _ok(_softmax(id(x), id(y), x.itemsize >> 3, 1), "log_softmax")


def _loss(total, kernel):
    if total != total and lib.fnn_last_failed():
        _ok(1, kernel)
    return total


def softmax_cross_entropy(logits, labels, probs, weight, ignore_index, reduction,
                          label_smoothing, losses):
    return _loss(_ce(id(logits), id(labels), id(probs), id(weight), ignore_index,
                     _REDUCTION[reduction], label_smoothing, 1.0, 0, 0, id(losses),
                     logits.itemsize >> 3, 0), "softmax_cross_entropy")


def softmax_cross_entropy_backward(logits, labels, probs, weight, ignore_index, reduction,
                                   label_smoothing, grad_loss, grad_rows, dlogits):
    per_row = grad_rows.size > 0
    _loss(_ce(id(logits), id(labels), id(probs), id(weight), ignore_index,
              _REDUCTION[reduction], label_smoothing, grad_loss, id(grad_rows) if per_row else 0,
              id(dlogits), id(_NO_LOSSES), logits.itemsize >> 3, 3 if per_row else 1),
          "softmax_cross_entropy_backward")


def softmax_cross_entropy_with_grad(logits, labels, probs, weight, ignore_index, reduction,
                                    label_smoothing, dlogits, losses):
    return _loss(_ce(id(logits), id(labels), id(probs), id(weight), ignore_index,
                     _REDUCTION[reduction], label_smoothing, 1.0, 0, id(dlogits), id(losses),
                     logits.itemsize >> 3, 1), "softmax_cross_entropy_with_grad")


_NO_LOSSES = np.zeros(0)


def linear_forward(x, weight, bias, relu, y):
    np.matmul(x, weight.T, out=y)
    if bias.size or relu:
        _bias_relu(id(y), id(bias), y.itemsize >> 3, 1 if relu else 0)


def linear_backward(dy, x, weight, y, relu, dx, dweight, dbias):
    if relu or dbias.size:
        dy = np.ascontiguousarray(dy)       # the C pass reads dy by rows
    if relu:
        dz = np.empty_like(dy)
        _ok(_relu_mask_dbias(id(dy), id(y), id(dz), id(dbias), dy.itemsize >> 3, 1),
            "linear_backward")
    else:
        dz = dy
        if dbias.size:
            _ok(_relu_mask_dbias(id(dy), 0, 0, id(dbias), dy.itemsize >> 3, 0),
                "linear_backward")
    np.matmul(dz.T, x, out=dweight)
    if dx.size:
        np.matmul(dz, weight, out=dx)


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, nesterov,
             weight_decay, first_step):
    _sgd(id(param), id(grad), id(momentum_buffer), param.itemsize >> 3, lr, momentum,
         dampening, 1 if nesterov else 0, weight_decay, 1 if first_step else 0)


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled):
    _adam(id(param), id(grad), id(exp_avg), id(exp_avg_sq), param.itemsize >> 3, step, lr,
          beta1, beta2, eps, weight_decay, 1 if decoupled else 0)
