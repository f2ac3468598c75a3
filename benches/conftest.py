"""The pytest-benchmark suite: fastnn's kernels against NumPy and PyTorch, for regressions.

It is the twin of ``python -m fastnn bench`` and reuses its definitions
(``fastnn.bench.cases``: one entry per kernel with its size ladder, inputs,
the idiomatic NumPy baseline and the float64 reference;
``fastnn.bench.contenders``: the contender list), so the two never measure
different things.  Each ``bench_<family>.py`` names its family; every kernel
entry of that family is benchmarked.

The contenders, one list for every bench file (``CONTENDERS`` below): the
NumPy baseline, each fastnn backend that can run (for the kernels it has),
PyTorch's CPU functions when PyTorch is installed, ``fastnn[NAME]+out`` for
the kernels that can write into a reused ``out=`` buffer, and for Linear
kernels ``gemm-only`` (NumPy's bare matrix products: the floor a fused layer
aims at).  Every contender of one kernel, size, dtype and thread count lands
in one pytest-benchmark group, so a table compares them side by side.
Inputs are built, each output checked against the reference, and the JIT
warmed, all outside the timed call.  ``extra_info`` records the contender,
backend, threads, dtype, shape, the kernel's minimum bytes or flops, the
versions of NumPy, Numba, PyTorch and fastnn, and how PyTorch's OpenMP
runtime was set up.

PyTorch runs in this process (pytest-benchmark times calls made here).  It
is imported first, before any fastnn backend: an OpenMP runtime reads
``OMP_WAIT_POLICY`` once, when it loads, and fastnn's numba backend sets
``PASSIVE`` for its own pool when it is imported; imported first, PyTorch
keeps the user's policy (measured on the project machine, a tiny batch
norm: 9.6-9.9 us against 50-386 us when imported after fastnn's backend).
Run ``pytest benches`` on its own for timings: with ``pytest tests
benches`` the tests may load fastnn's backend first (the header says which
happened).

Running::

    OPENBLAS_THREAD_TIMEOUT=4 pytest benches    # times the --quick sizes of the report
    pytest benches --bench-sizes all        # the whole ladder (several minutes)
    pytest benches --bench-threads 1,2 --bench-dtype float32,float64
    pytest benches -k "batchnorm and large"
    pytest benches --benchmark-disable      # each case once: the test-run check (below)

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

With ``--benchmark-disable`` (what the README's test command passes) and no
``--bench-sizes``, each case runs once: every kernel at its tiny sizes in
float32, and at its ``check_size`` in float64 (a size on the numba
backend's parallel path with several tiles; for batch norm an output of
10.5 MB written with ``out=``, which takes the streaming-store path).  The
suite is then a quick check that every contender still runs and agrees
with the reference on those paths.
"""

import importlib.util
import os
import re
import sys
import time

_TORCH_POLICY = os.environ.get("OMP_WAIT_POLICY")
_FASTNN_BACKEND_FIRST = "fastnn._backends.numba._jit" in sys.modules
if importlib.util.find_spec("torch") is not None:
    import torch  # noqa: F401  (first, so that its OpenMP runtime reads the user's policy)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastnn.bench import cases  # noqa: E402
from fastnn.bench.contenders import make_contenders, max_threads, set_threads  # noqa: E402

CONTENDERS, LEFT_OUT, LACKING = make_contenders()
TORCH_SETUP = ("not installed" if "torch" not in sys.modules else
               "this process; OMP_WAIT_POLICY at its import: "
               + (f"{_TORCH_POLICY}" if _TORCH_POLICY else "unset (the OpenMP runtime's default)")
               + (" (fastnn's numba backend was imported before it: the policy may be "
                  "fastnn's)" if _FASTNN_BACKEND_FIRST else ""))


def _versions():
    import fastnn
    versions = {"numpy": np.__version__, "fastnn": fastnn.__version__}
    for name in ("numba", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = module.__version__
    return versions


def pytest_addoption(parser):
    group = parser.getgroup("fastnn benches")
    group.addoption("--bench-sizes", default=None,
                    help="size names, tiers or labels, comma-separated; 'quick' (the default "
                         "when timing), 'all', or e.g. 'tiny,large' (with "
                         "--benchmark-disable the default is 'tiny' plus each kernel's "
                         "check size in float64)")
    group.addoption("--bench-threads", default=None,
                    help="thread counts, comma-separated (default: every usable CPU)")
    group.addoption("--bench-dtype", default="float32",
                    help="float32 (default), float64 or float32,float64")


def pytest_report_header(config):
    lines = ["fastnn benches: contenders " + ", ".join(c.name for c in CONTENDERS)]
    lines += [f"  not run: {name}: {reason}" for name, reason in LEFT_OUT.items()]
    lines += [f"  {name} lacks: {', '.join(missing)}" for name, missing in LACKING.items()]
    lines.append(f"  torch: {TORCH_SETUP}")
    return lines


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def _cases(config, kernel, dtypes):
    """``[(size, dtype)]`` of ``kernel`` that the options select."""
    choice = config.getoption("--bench-sizes")
    if choice is None and config.getoption("benchmark_disable"):
        checks = [(size, np.dtype("float32")) for size in kernel.sizes if size.tier == "tiny"]
        if kernel.check_size is not None:
            checks.append((kernel.check_size, np.dtype("float64")))
        return checks
    choice = choice or "quick"
    if choice == "quick":
        sizes = [kernel.size(name) for name in kernel.quick]
    elif choice == "all":
        sizes = list(kernel.sizes)
    else:
        tokens = _split(choice)
        sizes = [size for size in kernel.sizes
                 if any(token in (size.name, size.tier, size.label) for token in tokens)]
    return [(size, np.dtype(dtype)) for size in sizes for dtype in dtypes]


def pytest_generate_tests(metafunc):
    """Parametrize ``case``: the module's family's kernels x sizes x dtypes x threads x contenders."""
    if "case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    threads = [int(t) for t in _split(config.getoption("--bench-threads") or "")] \
        or [max_threads()]
    dtypes = _split(config.getoption("--bench-dtype"))
    family = metafunc.module.FAMILY
    params, ids = [], []
    for kernel in cases.KERNELS.values():
        if kernel.family != family:
            continue
        for size, dtype in _cases(config, kernel, dtypes):
            for n in threads:
                for contender in CONTENDERS:
                    if not contender.applies_to(kernel):
                        continue
                    params.append((kernel, size, dtype, n, contender))
                    name = re.sub(r"[^A-Za-z0-9]+", "-", contender.name).strip("-")
                    ids.append(f"{kernel.name}-{size.name}-{dtype.name}-{n}t-{name}")
    metafunc.parametrize("case", params, ids=ids)


# The check pass writes batch norm's check-size output with streaming stores
# whatever this machine's cache: the numba backend streams outputs of passes
# larger than the last-level cache (tens of MiB); here that threshold is
# lowered to the check size's bytes, as on a machine with a small cache.
CHECK_STREAM_BYTES = 8 << 20


def _stream_check_outputs(monkeypatch, kernel, size, dtype):
    import fastnn
    if kernel.family != "batchnorm" or fastnn.kernel_status()[kernel.api]["numba"] != "available":
        return
    import fastnn._backends.numba.batchnorm as numba_batchnorm
    monkeypatch.setattr(numba_batchnorm, "_STREAM_MIN_BYTES",
                        min(numba_batchnorm._STREAM_MIN_BYTES, CHECK_STREAM_BYTES))


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
def run_case(benchmark, case, monkeypatch):
    """Benchmark ``case``: build inputs, check the output, warm up, then time one call."""
    kernel, size, dtype, threads, contender = case
    if benchmark.disabled and size is kernel.check_size:
        _stream_check_outputs(monkeypatch, kernel, size, dtype)

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
        benchmark.extra_info.update(
            kernel=kernel.name, size=size.name, shape=list(size.shape), dtype=dtype.name,
            threads=threads, contender=contender.name, kind=contender.kind,
            backend=contender.backend, min_bytes=kernel.min_bytes(size.shape, dtype.itemsize),
            flops=kernel.flops(size.shape), versions=_versions(),
            torch_setup=TORCH_SETUP if contender.kind == "torch" else None)
        if not benchmark.disabled:
            time.sleep(0.02)    # let the previous test's spinning worker threads fall asleep
        benchmark(call)
    return run
