"""``fastnn.warmup()``: compile every JIT kernel ahead of time.

Each backend that compiles on first use (numba) declares, per kernel entry
point, the argument types the public API calls it with: the API hands
kernels one layout per dtype (``fastnn/_api/_layout.py``), so a handful of
signatures serves every call a user can make.  A backend module may define
``warmup()``; this calls it, and with the backend's on-disk cache a later
process then starts warm.  Backends without it (numpy, c) have nothing to
compile.
"""

import time

from . import _registry


def warmup(backends=None):
    """Compile every kernel of the given (default: every importable) backends.

    Returns ``{backend name: seconds taken}``.  With a warm on-disk cache
    this only loads the compiled code.
    """
    if backends is None:
        backends = [name for name, status in _registry.backends().items()
                    if not status.startswith("unavailable")]
    timings = {}
    for name in backends:
        module = _registry.module(name)          # RuntimeError now if it cannot load
        start = time.perf_counter()
        compile_all = getattr(module, "warmup", None)
        if compile_all is not None:
            compile_all()
        timings[name] = time.perf_counter() - start
    return timings
