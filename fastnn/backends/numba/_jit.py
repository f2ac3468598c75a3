"""The JIT policy of the numba backend, in one place.

- ``cache=True``: compiled machine code is kept on disk beside the sources
  (``__pycache__``), so a new process with a warm cache compiles nothing.
- ``nogil=True``: kernels release the GIL, so callers may run them from
  several Python threads.
- ``error_model="numpy"``: division by zero gives inf/nan as NumPy does,
  instead of raising, and leaves the division without a branch.
- ``fastmath`` is off.  A kernel that turns on a subset of LLVM's flags says
  which ones and why in a comment, and its numerical tests (``-inf`` masking,
  extreme logits, large-mean variance) must still pass.  ``nnan``/``ninf``
  are never allowed: ``-inf`` logits are part of the contract.

Parallel kernels reduce through fixed-size blocks: a ``prange`` loop writes
one partial result per block into its own slot of a buffer, and the partials
are combined afterwards in block order.  Block sizes never depend on the
thread count, so results are bitwise identical run to run and across
``fastnn.set_num_threads`` settings.

Waking the thread pool costs a few microseconds per call, more than a small
kernel takes; each kernel family therefore has a serial variant used below
``PARALLEL_MIN_ELEMENTS`` elements.
"""

import types

import numba

PARALLEL_MIN_ELEMENTS = 1 << 15


def jit(*, parallel=False, fastmath=False):
    """Decorator for a serial (``parallel=False``) or ``prange`` kernel."""
    return numba.njit(cache=True, nogil=True, parallel=parallel,
                      fastmath=fastmath, error_model="numpy")


def serial_and_parallel(function):
    """Two builds of one ``prange`` source: ``(serial, parallel)`` dispatchers.

    In the serial build ``prange`` is a plain ``range``.  Numba names its
    on-disk cache entries after the function's qualified name and first line,
    not its compile flags, so two builds of the very same function would
    share (and corrupt) one cache entry: the parallel build is made from a
    twin of the function with its own qualified name.
    """
    twin = types.FunctionType(function.__code__, function.__globals__,
                              function.__name__, function.__defaults__,
                              function.__closure__)
    twin.__qualname__ = function.__qualname__ + "_parallel"
    twin.__doc__ = function.__doc__
    return jit()(function), jit(parallel=True)(twin)


def use_parallel(n_elements):
    """True when a call over ``n_elements`` is large enough for threads."""
    return n_elements >= PARALLEL_MIN_ELEMENTS and numba.get_num_threads() > 1
