"""The numba backend: every kernel of the contract compiled with Numba.

Kernels compile lazily on first call and are cached on disk; nothing is
compiled at import.  ``fastnn.warmup()`` compiles them all ahead of time.
The JIT flags and the parallel policy live in ``_jit.py``.
"""

from .batchnorm import batchnorm_backward, batchnorm_forward
from .linear import linear_backward, linear_forward
from .softmax import (
    log_softmax,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_with_grad,
)
from .optim import adam_step, sgd_step


def warmup():
    """Compile (or load from the disk cache) every declared entry-point signature."""
    from ._jit import compile_entry_points
    compile_entry_points()


def set_num_threads(n):
    """Called by ``fastnn.set_num_threads``; numba cannot exceed its pool size."""
    import numba
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
