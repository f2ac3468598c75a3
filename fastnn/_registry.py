"""Which backend runs a kernel: the registry, the current choice, threads.

A backend is a module implementing kernels of ``fastnn._backends.KERNELS``
(the contract is in ``fastnn/_backends/__init__.py``).  The built-in ones are
listed in ``BUILTIN``; an installed package adds one with no change here by
declaring an entry point in the group ``fastnn.backends`` whose value is the
module path.  A backend module is imported on first use, never at
``import fastnn``; if its import fails it is unavailable and the reason is
kept to be shown.

Availability is tracked per (backend, kernel): a backend that lacks some
kernels (one being built kernel by kernel, or one older than a new kernel)
still runs the others.  ``backends()`` says per backend whether it is fully
available, and if not why; ``kernel_status()`` says it per kernel.

The choice of backend, most specific first: the ``backend=`` argument of a
call; the innermost ``use_backend`` block (a ContextVar, so threads and async
tasks each have their own); ``set_backend``; the ``FASTNN_BACKEND``
environment variable; ``"auto"``.  ``"auto"`` picks, per kernel, the first
backend in ``FASTEST`` (ordered by measured figures, see its comment)
that has that kernel.  An explicit choice of a backend
that cannot be imported, or that lacks the kernel called, is an error naming
the backend and the kernel, never a silent fallback.
"""

import contextlib
import contextvars
import importlib
import os

from ._backends import KERNELS

BUILTIN = {
    "numpy": "fastnn._backends.numpy",
    "numba": "fastnn._backends.numba",
    "c": "fastnn._backends.c",
}
ENTRY_POINT_GROUP = "fastnn.backends"

# Per kernel, the backends "auto" tries in order.  The rule: c first where
# its rows in one ``python -m fastnn bench --backends numba,c`` run were
# faster than numba's on their geometric mean (the figures and the run are
# in kernels/README.md, "Performance"): batch norm forward 1.21x, backward
# 1.10x, the cross-entropy kernels 1.01-1.68x, and softmax/log-softmax,
# which run the same row code.  numba first where it led or the rows were at
# parity (the Linear kernels: the same BLAS products, and numba's one-call
# path for tiny layers) and where no row measured the two (the optimizer
# steps).  An unavailable backend is skipped, so without a C compiler
# "auto" is numba everywhere.
_C_FIRST = frozenset({
    "batchnorm_forward", "batchnorm_backward", "softmax", "log_softmax",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "softmax_cross_entropy_with_grad"})
FASTEST = {kernel: ("c", "numba", "numpy") if kernel in _C_FIRST else ("numba", "c", "numpy")
           for kernel in KERNELS}

_modules = {}       # name -> module path, filled on first use
_loaded = {}        # name -> module, or the reason it is unavailable (str)
_resolved = {}      # (name, kernel) -> function
_default = None     # set_backend's choice, or FASTNN_BACKEND once read
_override = contextvars.ContextVar("fastnn_backend", default=None)
_num_threads = None


def _known():
    if not _modules:
        found = dict(BUILTIN)
        from importlib.metadata import entry_points
        for point in entry_points(group=ENTRY_POINT_GROUP):
            found.setdefault(point.name, point.value)
        _modules.update(found)
    return _modules


def _check_name(name, argument="backend"):
    known = _known()
    if name != "auto" and name not in known:
        raise ValueError(f"{argument}: expected one of 'auto', "
                         f"{', '.join(map(repr, known))}, got {name!r}")
    return name


def _usable_name(name):
    """``name`` if it is "auto" or an available backend; else the error why not."""
    if _check_name(name) != "auto":
        module(name)
    return name


def _load(name):
    """The backend's module, or the reason (a string) it cannot be used."""
    if name not in _loaded:
        try:
            module = importlib.import_module(_known()[name])
        except Exception as exc:  # any failure to import makes it unavailable
            _loaded[name] = f"{type(exc).__name__}: {exc}"
        else:
            _loaded[name] = module
            if _num_threads is not None:
                _apply_threads(module, _num_threads)
    return _loaded[name]


def _lacks(loaded, kernel_name):
    """Why the loaded backend (module, or the reason it failed) cannot run
    ``kernel_name``; None when it can."""
    if isinstance(loaded, str):
        return loaded
    if callable(getattr(loaded, kernel_name, None)):
        return None
    return "this backend does not implement it"


def kernel_status():
    """``{kernel: {backend: "available" | "unavailable: <reason>"}}`` for every
    kernel of the contract and every known backend."""
    status = {}
    for kernel_name in KERNELS:
        status[kernel_name] = {}
        for name in _known():
            reason = _lacks(_load(name), kernel_name)
            status[kernel_name][name] = ("available" if reason is None
                                         else f"unavailable: {reason}")
    return status


def backends():
    """``{name: status}`` for every known backend: ``"available"`` (every
    kernel), ``"partial: lacks <kernels>"`` (it runs the others) or
    ``"unavailable: <reason>"``."""
    status = {}
    for name in _known():
        loaded = _load(name)
        if isinstance(loaded, str):
            status[name] = f"unavailable: {loaded}"
            continue
        lacking = [k for k in KERNELS if _lacks(loaded, k) is not None]
        if not lacking:
            status[name] = "available"
        elif len(lacking) == len(KERNELS):
            status[name] = "unavailable: it implements no kernel of the contract"
        else:
            status[name] = f"partial: lacks {', '.join(lacking)}"
    return status


def has_kernel(name, kernel_name):
    return _lacks(_load(name), kernel_name) is None


def module(name):
    """The module of an explicitly named backend; RuntimeError if it cannot be imported."""
    loaded = _load(_check_name(name))
    if isinstance(loaded, str):
        raise RuntimeError(f"backend {name!r} is unavailable: {loaded}")
    return loaded


def kernel(kernel_name, backend=None):
    """The function that runs ``kernel_name`` for this call."""
    name = backend or _override.get() or current_default()
    function = _resolved.get((name, kernel_name))
    if function is None:
        function = _resolve(name, kernel_name)
        _resolved[(name, kernel_name)] = function
    return function


def _resolve(name, kernel_name):
    if name == "auto":
        order = FASTEST.get(kernel_name, ()) + tuple(_known())
        for candidate in order:
            if candidate in _known() and has_kernel(candidate, kernel_name):
                return getattr(_load(candidate), kernel_name)
        raise RuntimeError(f"no backend has the kernel {kernel_name}: "
                           f"{kernel_status()[kernel_name]}")
    loaded = module(name)
    if _lacks(loaded, kernel_name) is not None:
        having = [n for n in _known() if has_kernel(n, kernel_name)]
        raise RuntimeError(f"backend {name!r} has no kernel {kernel_name} (backends that "
                           f"have it: {', '.join(having) or 'none'}; or use 'auto')")
    return getattr(loaded, kernel_name)


def current_default():
    """set_backend's choice, else FASTNN_BACKEND (read once), else "auto"."""
    global _default
    if _default is None:
        name = os.environ.get("FASTNN_BACKEND", "auto") or "auto"
        _default = _check_name(name, "FASTNN_BACKEND")
    return _default


def set_backend(name):
    """Make ``name`` (or ``"auto"``) the process-wide default backend."""
    global _default
    _default = _usable_name(name)


def get_backend():
    """The backend name in force here: a ``use_backend`` block's, else the default."""
    return _override.get() or current_default()


@contextlib.contextmanager
def use_backend(name):
    """Run the block with ``name`` as the backend (per thread and async task)."""
    token = _override.set(_usable_name(name))
    try:
        yield name
    finally:
        _override.reset(token)


def _apply_threads(backend_module, n):
    setter = getattr(backend_module, "set_num_threads", None)
    if setter is not None:
        setter(n)


def set_num_threads(n):
    """Threads used by the threaded backends and by BLAS in the Linear kernels.

    Numba keeps its thread count per calling thread: this sets it for the
    thread that calls it (and BLAS's for the process).  Numba cannot go
    beyond its pool (``NUMBA_NUM_THREADS``, by default the core count).
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected a positive integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n: expected a positive integer, got {n}")
    _num_threads = n
    for loaded in _loaded.values():
        if not isinstance(loaded, str):
            _apply_threads(loaded, n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(n, user_api="blas")


WAIT_POLICY = "PASSIVE"
_wait_policy_requested = False


def request_sleeping_threads():
    """Ask the OpenMP runtimes started after this call to let idle threads sleep.

    A threaded backend calls it before its OpenMP runtime loads (Numba's
    pool, the C kernels' libgomp): a pool that spins after each parallel
    kernel takes a core from the BLAS product that often follows
    (docs/PERFORMANCE.md, "Linear").  A policy the user chose is kept.
    """
    global _wait_policy_requested
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    _wait_policy_requested = True


def sleeping_threads_requested():
    """Whether a backend has asked for ``OMP_WAIT_POLICY=PASSIVE`` in this process."""
    return _wait_policy_requested


def get_num_threads():
    if _num_threads is not None:
        return _num_threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
