"""The JIT policy of the numba backend, in one place.

- ``cache=True``: compiled machine code is kept on disk beside the sources
  (``__pycache__``), so a new process with a warm cache compiles nothing.
  Numba checks only the defining file's timestamp: after editing a helper in
  another file (``_vexp.py``, ``_intrinsics.py``), delete ``__pycache__``
  here, or the callers keep the old helper inlined.
- ``nogil=True``: kernels release the GIL, so callers may run them from
  several Python threads.  That holds with Numba's OpenMP or TBB threading
  layer; its fallback "workqueue" layer aborts on concurrent parallel calls.
  Numba's thread count is per calling thread: ``fastnn.set_num_threads``
  sets it for the thread that calls it.
- ``error_model="numpy"``: division by zero gives inf/nan as NumPy does,
  instead of raising, and leaves the division without a branch.
- ``fastmath`` is off.  A kernel that turns on a subset of LLVM's flags says
  which ones and why in a comment, and its numerical tests (``-inf`` masking,
  extreme logits, large-mean variance) must still pass.  ``nnan``/``ninf``
  (and so ``fastmath=True``) are refused: ``-inf`` logits are part of the
  contract.

Parallel kernels reduce through fixed-size blocks: a ``prange`` loop writes
one partial result per block into its own slot of a buffer, and the partials
are combined afterwards in block order.  Block sizes never depend on the
thread count, so results are bitwise identical run to run and across
``fastnn.set_num_threads`` settings.

Waking the thread pool costs a few microseconds per call, more than a small
kernel takes; each kernel family therefore has a serial variant used below
``PARALLEL_MIN_ELEMENTS`` elements.

Idle threads must sleep, not spin.  Numba's OpenMP pool spins after each
parallel kernel by default, and a BLAS product started meanwhile (the next
Linear layer) loses a core to it (docs/PERFORMANCE.md, "Linear").
``OMP_WAIT_POLICY=PASSIVE`` removes that, at about 4 us more per small
parallel call; it is requested here (``_registry.request_sleeping_threads``),
before the pool starts, unless the user has chosen a policy.
"""

import types

from ... import _registry

_registry.request_sleeping_threads()

import numba  # noqa: E402  (after the wait policy, which the pool reads at start)

PARALLEL_MIN_ELEMENTS = 1 << 15


# The LLVM fast-math flags a kernel may ask for: none assumes away inf or nan.
ALLOWED_FASTMATH = frozenset({"reassoc", "contract", "arcp", "nsz", "afn"})


def jit(*, parallel=False, fastmath=frozenset()):
    """Decorator for a serial (``parallel=False``) or ``prange`` kernel."""
    if isinstance(fastmath, bool) or not set(fastmath) <= ALLOWED_FASTMATH:
        raise ValueError(f"fastmath: expected a subset of {sorted(ALLOWED_FASTMATH)}, "
                         f"got {fastmath!r}")
    fastmath = set(fastmath) or False
    return numba.njit(cache=True, nogil=True, parallel=parallel,
                      fastmath=fastmath, error_model="numpy")


# Every dispatcher called from Python, with the argument types it is meant
# to be called with: (dispatcher, [tuple of numba types, ...]).  warmup()
# compiles exactly these, and the test suite checks that the public API
# never calls an entry point with any other types.
ENTRY_POINTS = []

# The float types an entry point's signature template is instantiated for.
FLOAT_TYPES = ("float32", "float64")


def _signatures(template):
    """Argument-type tuples of a signature template, one per float type.

    The template is a Numba signature string in which ``F`` stands for the
    call's float type, as an array's element or a scalar:
    ``"void(F[:, ::1], F, int64, boolean)"``.  Only the argument types are
    kept: a call is matched (and cached on disk) by its argument types alone.
    """
    import re
    from numba.core import sigutils
    signatures = []
    for float_type in FLOAT_TYPES:
        text = re.sub(r"\bF\b", float_type, template)
        args, _ = sigutils.normalize_signature(text)
        signatures.append(tuple(args))
    return signatures


def entry(template, *, parallel=False, fastmath=frozenset()):
    """Decorator for a kernel called from Python: ``jit`` plus its declared
    signatures (see ``_signatures``) registered in ``ENTRY_POINTS``."""
    def decorate(function):
        dispatcher = jit(parallel=parallel, fastmath=fastmath)(function)
        ENTRY_POINTS.append((dispatcher, _signatures(template)))
        return dispatcher
    return decorate


def serial_and_parallel(template):
    """Decorator: two builds of one ``prange`` source, ``(serial, parallel)``
    dispatchers, both entry points with the signatures of ``template``.

    In the serial build ``prange`` is a plain ``range``.  Numba names its
    on-disk cache entries after the function's qualified name and first line,
    not its compile flags, so two builds of the very same function would
    share (and corrupt) one cache entry: the parallel build is made from a
    twin of the function with its own qualified name.
    """
    def decorate(function):
        twin = types.FunctionType(function.__code__, function.__globals__,
                                  function.__name__, function.__defaults__,
                                  function.__closure__)
        twin.__qualname__ = function.__qualname__ + "_parallel"
        twin.__doc__ = function.__doc__
        return entry(template)(function), entry(template, parallel=True)(twin)
    return decorate


def compile_entry_points():
    """Compile (or load from the disk cache) every declared signature."""
    for dispatcher, signatures in ENTRY_POINTS:
        for signature in signatures:
            dispatcher.compile(signature)


def use_parallel(n_elements):
    """True when a call over ``n_elements`` is large enough for threads."""
    return n_elements >= PARALLEL_MIN_ELEMENTS and numba.get_num_threads() > 1
