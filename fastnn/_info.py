"""``python -m fastnn info``: every backend, its status or the reason it is
unavailable, and what each fast backend runs with.

- c: the instruction-set variant in use and those the CPU supports, the
  OpenMP runtime, the thread count and the build flags;
- numba: the threading layer and where compiled kernels are cached;
- the machine's caches as the kernels read them (``fastnn/_machine.py``).
"""

import os
from pathlib import Path

from . import _machine, _registry


def _numba_details():
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:          # no parallel kernel has run yet in this process
        layer = f"{numba.config.THREADING_LAYER} (chosen at the first parallel call)"
    cache = numba.config.CACHE_DIR or str(
        Path(_registry.module("numba").__file__).parent / "__pycache__")
    return {"version": numba.__version__, "threading layer": layer,
            "threads": numba.get_num_threads(), "cache dir": cache}


def details():
    """``{backend: {"status": ..., more: ...}}`` for every known backend."""
    report = {}
    for name, status in _registry.backends().items():
        entry = {"status": status}
        if not status.startswith("unavailable"):
            module = _registry.module(name)
            if name == "numba":
                entry.update(_numba_details())
            elif hasattr(module, "info"):
                entry.update(module.info())
        report[name] = entry
    return report


def main():
    caches = _machine.caches()
    print(f"fastnn threads: {_registry.get_num_threads()}; caches ({caches.source}): "
          f"L1d {caches.l1d >> 10} KiB, L2 {caches.l2 >> 10} KiB, "
          f"last level {caches.last_level >> 20} MiB")
    print(f"FASTNN_BACKEND={os.environ.get('FASTNN_BACKEND', '')!s} "
          f"(default backend: {_registry.get_backend()})")
    for name, entry in details().items():
        print(f"{name}: {entry['status']}")
        for key, value in entry.items():
            if key != "status":
                print(f"    {key}: {value}")
    return 0
