"""fastnn's benchmark: ``python -m fastnn bench`` and the definitions ``benches/`` reuses.

Answers "how much faster is fastnn on this machine, and how close to the
hardware?": every kernel on every available backend, side by side with an
idiomatic NumPy version and PyTorch's CPU kernels (when installed), each
peer under its own defaults, rated against the machine's own measured
memory bandwidth and GEMM rate, and checked against performance targets
kept as data.

Modules, in the order a run uses them:

- ``environment``: the user's environment before fastnn changed it;
- ``cases``: one entry per kernel (sizes, inputs, NumPy baseline, fastnn
  and PyTorch calls, cost model), one module per family;
- ``contenders``: who runs (NumPy, PyTorch, each fastnn backend for the
  kernels it has), threads;
- ``worker``: PyTorch's own process, under the user's environment;
- ``roofline``: STREAM-like triad and GEMM throughput, measured at start;
- ``startup``: import time, cold compile, first call with a warm cache;
- ``timing``: interleaved robust timing (clock injectable), tracemalloc peak memory;
- ``runner``: runs a configuration; ``targets`` with ``targets.toml``: the
  performance targets, read from data and checked;
- ``report``, ``plot``, ``cli``: the text report, the PNG, the options.

Run ``python -m fastnn bench --help``; the pytest-benchmark twin is
``pytest benches`` (see ``benches/conftest.py``).
"""

from . import environment  # noqa: F401  (first: snapshots the environment before any backend)
