"""The pytest-benchmark suite: fastnn's kernels against NumPy and PyTorch, for regressions.

It is the twin of ``python -m fastnn bench`` and reuses its definitions
(``fastnn.bench.cases``: kernels, size ladders, inputs, the idiomatic NumPy
baseline and the float64 reference; ``fastnn.bench.contenders``: the
contender list), so the two never measure different things.

The contenders, one list for every bench file (``CONTENDERS`` below): the
NumPy baseline, each fastnn backend that is available, PyTorch's CPU
functions when PyTorch is installed, ``fastnn[NAME]+out`` for the kernels
that can write into a reused ``out=`` buffer, and for Linear kernels ``gemm-only``
(NumPy's bare matrix products: the floor a fused layer aims at).  Every
contender of one kernel, size, dtype and thread count lands in one
pytest-benchmark group, so a table compares them side by side.  Inputs are
built, each output checked against the reference, and the JIT warmed,
all outside the timed call.  ``extra_info`` records the contender, backend,
threads, dtype, shape and the kernel's minimum bytes or flops.

Running::

    OPENBLAS_THREAD_TIMEOUT=4 pytest benches    # times the --quick sizes of the report
    pytest benches --bench-sizes all        # the whole ladder (several minutes)
    pytest benches --bench-threads 1,2 --bench-dtype float32,float64
    pytest benches -k "batchnorm and large"
    pytest benches --benchmark-disable      # each case once, tiny sizes: the test-run check

OpenBLAS's worker threads spin for about 0.1 s after each call and slow
whatever runs next; as ``python -m fastnn bench`` does, set
``OPENBLAS_THREAD_TIMEOUT=4`` in the environment for stable figures
(it must be set before NumPy is imported, so on the command line).

Comparing two runs (pytest-benchmark stores runs under ``.benchmarks/``)::

    pytest benches --benchmark-save=before
    # ... change a kernel ...
    pytest benches --benchmark-save=after --benchmark-compare=0001 \\
        --benchmark-compare-fail=median:10%     # fails if a median got 10% slower
    pytest-benchmark compare 0001 0002 --group-by=group --columns=min,median,max
    python -m fastnn.bench.speedups .benchmarks/*/0002_after.json   # speedup tables

With ``--benchmark-disable`` (what the README's test command passes) each
case runs once at the tiny sizes, unless ``--bench-sizes`` says otherwise:
the suite is then a quick check that every contender still runs and agrees
with the reference.
"""

import re
import time

import numpy as np
import pytest

from fastnn.bench import cases
from fastnn.bench.contenders import make_contenders, max_threads, set_threads

CONTENDERS, LEFT_OUT = make_contenders()


def pytest_addoption(parser):
    group = parser.getgroup("fastnn benches")
    group.addoption("--bench-sizes", default=None,
                    help="size names, tiers or labels, comma-separated; 'quick' (the default "
                         "when timing), 'all', or e.g. 'tiny,large' ('tiny' by default with "
                         "--benchmark-disable)")
    group.addoption("--bench-threads", default=None,
                    help="thread counts, comma-separated (default: every usable CPU)")
    group.addoption("--bench-dtype", default="float32",
                    help="float32 (default), float64 or float32,float64")


def pytest_report_header(config):
    lines = ["fastnn benches: contenders " + ", ".join(c.name for c in CONTENDERS)]
    lines += [f"  not run: {name}: {reason}" for name, reason in LEFT_OUT.items()]
    return lines


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def _sizes(config, kernel):
    choice = config.getoption("--bench-sizes")
    if choice is None:
        choice = "tiny" if config.getoption("benchmark_disable") else "quick"
    if choice == "quick":
        return [kernel.size(name) for name in kernel.quick]
    if choice == "all":
        return list(kernel.sizes)
    tokens = _split(choice)
    return [size for size in kernel.sizes
            if any(token in (size.name, size.tier, size.label) for token in tokens)]


def pytest_generate_tests(metafunc):
    """Parametrize ``case``: the module's ``KERNELS`` x sizes x dtypes x threads x contenders."""
    if "case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    threads = [int(t) for t in _split(config.getoption("--bench-threads") or "")] \
        or [max_threads()]
    dtypes = _split(config.getoption("--bench-dtype"))
    params, ids = [], []
    for kernel_name in metafunc.module.KERNELS:
        kernel = cases.KERNELS[kernel_name]
        for size in _sizes(config, kernel):
            for dtype in dtypes:
                for n in threads:
                    for contender in CONTENDERS:
                        if not contender.applies_to(kernel):
                            continue
                        params.append((kernel, size, np.dtype(dtype), n, contender))
                        name = re.sub(r"[^A-Za-z0-9]+", "-", contender.name).strip("-")
                        ids.append(f"{kernel.name}-{size.name}-{dtype}-{n}t-{name}")
    metafunc.parametrize("case", params, ids=ids)


class _InputCache:
    """The inputs and reference of the last (kernel, size, dtype): contenders of a case
    run one after another, so one entry is enough and large inputs are not kept."""

    key = None
    value = None

    def get(self, kernel, size, dtype):
        key = (kernel.name, size.name, dtype.name)
        if key != self.key:
            self.key, self.value = None, None       # free the previous inputs first
            inputs = cases.case_inputs(kernel, size, dtype)
            self.key, self.value = key, (inputs, cases.reference_outputs(kernel, inputs))
        return self.value


_inputs = _InputCache()


@pytest.fixture
def run_case(benchmark, case):
    """Benchmark ``case``: build inputs, check the output, warm up, then time one call."""
    kernel, size, dtype, threads, contender = case

    def run():
        set_threads(threads)
        inputs, reference = _inputs.get(kernel, size, dtype)
        own = dict(inputs)
        for name in kernel.mutable:
            own[name] = inputs[name].copy()
        call, outputs = contender.prepare(kernel, own)
        result = call()                             # compiles a JIT kernel if it must
        if outputs is not None:
            error, where = cases.compare(outputs(result), reference, dtype)
            assert cases.within_tolerance(error, dtype), \
                f"{contender.name} {kernel.name} {size.label} {dtype}: {where} off by {error:.3g}"
        del result
        call()                                      # warm: caches, threads, page mappings
        benchmark.group = f"{kernel.name} {size.label} {dtype.name} {threads}t"
        min_bytes = kernel.min_bytes(size.shape, dtype.itemsize)
        benchmark.extra_info.update(
            kernel=kernel.name, size=size.name, shape=list(size.shape), dtype=dtype.name,
            threads=threads, contender=contender.name, kind=contender.kind,
            backend=contender.backend, min_bytes=min_bytes, flops=kernel.flops(size.shape))
        if not benchmark.disabled:
            time.sleep(0.02)    # let the previous test's spinning worker threads fall asleep
        benchmark(call)
    return run
