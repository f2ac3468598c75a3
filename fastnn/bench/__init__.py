"""fastnn's benchmark: ``python -m fastnn bench`` and the definitions ``benches/`` reuses.

Answers "how much faster is fastnn on this machine, and how close to the
hardware?": every kernel on every available backend, side by side with an
idiomatic NumPy version and PyTorch's CPU kernels (when installed), rated
against the machine's own measured memory bandwidth and GEMM rate.

Modules, in the order a run uses them:

- ``cases``: the kernels, their size ladders, inputs, minimum bytes / flops;
- ``baselines``: the idiomatic NumPy versions (and the float64 oracle);
- ``contenders``: who runs (NumPy, PyTorch, each fastnn backend), threads;
- ``roofline``: STREAM-like triad and GEMM throughput, measured at start;
- ``startup``: import time, cold compile, first call with a warm cache;
- ``timing``: interleaved robust timing, tracemalloc peak memory;
- ``runner``: runs a configuration; ``targets``: issue 3's targets;
- ``report``, ``plot``, ``cli``: the text report, the PNG, the options.

Run ``python -m fastnn bench --help``; the pytest-benchmark twin is
``pytest benches`` (see ``benches/conftest.py``).
"""
