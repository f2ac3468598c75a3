"""Threads: results that do not depend on the thread count, and concurrent callers.

- Every kernel's large samples give bitwise the same results at 1, 2, 3 and
  4 threads (a fresh process with ``NUMBA_NUM_THREADS=4``), and the numba
  kernels provably ran their parallel variants there (the entry points
  called are recorded).  The Linear kernels hand their products to BLAS,
  which splits them by thread count: there the products agree within float
  tolerance and repeated calls at one count are bitwise equal.
- Several Python threads calling kernels at once get the results of serial
  calls; ``use_backend`` and ``set_num_threads`` act per thread; the numba
  threading layer in use is one that allows concurrent callers.
"""

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import fastnn

from .opinfo import OPS
from .support import AVAILABLE_BACKENDS, assert_bitwise_equal, assert_outputs, copy_kwargs

REPOSITORY = Path(__file__).resolve().parents[1]
BLAS_BOUND = ("linear_forward", "linear_backward")

ACROSS_THREAD_COUNTS = r"""
import json, sys
import numpy as np
import fastnn, numba
from tests.opinfo import OPS
from tests.support import (assert_bitwise_equal, assert_outputs, copy_kwargs,
                           numba_parallel_calls)

BLAS_BOUND = ("linear_forward", "linear_backward")
report = {"pool": numba.config.NUMBA_NUM_THREADS, "failures": [], "parallel": {},
          "checked": 0}
for op in OPS:
    for dtype in (np.float32, np.float64):
        for sample in [s for s in op.samples(dtype) if s.large]:
            results = {}
            for threads in (1, 2, 3, 4, 1):
                fastnn.set_num_threads(threads)
                kwargs = copy_kwargs(sample.kwargs)
                with numba_parallel_calls() as calls:
                    result = op.function(**kwargs, backend="numba")
                mutated = tuple(kwargs[name] for name in op.mutable(kwargs)
                                if kwargs.get(name) is not None)
                if threads > 1:
                    report["parallel"].setdefault(f"{op.name}/{sample.desc}", []).append(
                        sorted(set(calls)))
                results.setdefault(threads, []).append((result, mutated))
            label = f"{op.name} {np.dtype(dtype).name} {sample.desc}"
            try:
                one, again = results[1]
                assert_bitwise_equal(one, again, f"{label}: 1 thread twice")
                for threads in (2, 3, 4):
                    (other,) = results[threads]
                    if op.name in BLAS_BOUND:
                        assert_outputs(other[0], one[0], dtype, f"{label}: {threads} threads")
                    else:
                        assert_bitwise_equal(other, one, f"{label}: {threads} threads vs 1")
                report["checked"] += 1
            except AssertionError as failure:
                report["failures"].append(str(failure))
print(json.dumps(report))
"""


def _python(code, **env):
    environment = dict(os.environ, **env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else []))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=REPOSITORY, timeout=900)


needs_numba = pytest.mark.skipif("numba" not in AVAILABLE_BACKENDS,
                                 reason="numba unavailable (test_backends.py fails for that)")


@needs_numba
def test_numba_bitwise_at_1_to_4_threads_on_the_parallel_path():
    run = _python(ACROSS_THREAD_COUNTS, NUMBA_NUM_THREADS="4")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["pool"] == 4
    assert report["failures"] == [], "\n".join(report["failures"])
    large = {f"{op.name}/{s.desc}" for op in OPS for s in op.samples(np.float32) if s.large}
    assert report["checked"] == 2 * len(large)
    for case, calls in report["parallel"].items():
        if case.split("/")[0] in BLAS_BOUND:
            continue            # their numba passes are serial by design (linear.py)
        assert all(calls), f"{case} did not run a parallel kernel at 2-4 threads: {calls}"


# ------------------------------------------------------------- concurrency

def _large_samples():
    return [(op, sample) for op in OPS for sample in op.samples(np.float32) if sample.large]


@pytest.mark.parametrize("backend", AVAILABLE_BACKENDS)
def test_concurrent_callers_get_serial_results(backend):
    """Eight Python threads call every large sample at once: the results of serial calls."""
    cases = _large_samples()
    expected = []
    for op, sample in cases:
        kwargs = copy_kwargs(sample.kwargs)
        expected.append((op.function(**kwargs, backend=backend), kwargs))

    def call(index):
        op, sample = cases[index % len(cases)]
        kwargs = copy_kwargs(sample.kwargs)
        return op.function(**kwargs, backend=backend), kwargs

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(4 * len(cases))))
    for index, (result, kwargs) in enumerate(results):
        op, sample = cases[index % len(cases)]
        want, want_kwargs = expected[index % len(cases)]
        if op.name in BLAS_BOUND:
            assert_outputs(result, want, np.float32, f"{op.name} {sample.desc}")
        else:
            assert_bitwise_equal(result, want, f"{op.name} {sample.desc}")
        for name in op.mutable(kwargs):
            if kwargs.get(name) is not None and name != "out":
                assert_bitwise_equal(kwargs[name], want_kwargs[name], f"{op.name} {name}")


@needs_numba
def test_threading_layer_allows_concurrent_callers():
    import numba
    x = np.random.default_rng(0).standard_normal((512, 160)).astype(np.float32)
    fastnn.batchnorm_forward(x, backend="numba")        # starts the pool
    # "workqueue", numba's fallback, aborts the process on concurrent parallel calls.
    assert numba.threading_layer() in ("omp", "tbb")


def test_use_backend_is_per_thread():
    outside = fastnn.get_backend()
    seen = {}
    barrier = threading.Barrier(2)

    def worker(name):
        with fastnn.use_backend(name):
            barrier.wait()
            seen[name] = fastnn.get_backend()
            barrier.wait()

    names = ["numpy", AVAILABLE_BACKENDS[-1] if len(AVAILABLE_BACKENDS) > 1 else "auto"]
    threads = [threading.Thread(target=worker, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {name: name for name in names}
    assert fastnn.get_backend() == outside


@needs_numba
def test_set_num_threads_is_per_thread(restore_threads):
    """Numba keeps its thread count per calling thread: a worker's setting
    does not change another thread's."""
    import numba
    fastnn.set_num_threads(2)
    seen = {}

    def worker():
        fastnn.set_num_threads(1)
        seen["worker"] = numba.get_num_threads()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["worker"] == 1
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
