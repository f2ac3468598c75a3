"""The machine's own limits, measured at start: memory bandwidth and GEMM rate.

Memory bandwidth is a STREAM triad ``a[i] = b[i] + s * c[i]`` over float64
arrays, counted as STREAM counts it: 3 arrays x 8 bytes per element (two
reads, one write; the read-for-ownership of ``a`` is not counted).  The probe
is a Numba ``prange`` loop on the thread count in use, writing into an
existing ``a``: one pass, no temporaries, no page faults; the best of the
repeats is the bandwidth (STREAM's convention).  Two array sizes:

- ``dram``: 3 x 128 MiB, far beyond any cache: the roofline that memory-bound
  kernels are rated against ("% of triad");
- ``cache``: 3 x 2 MiB, held in the last-level cache: explains medium sizes
  that run above the DRAM figure when called back to back.

The NumPy way of writing it, ``a = b + s * c``, is measured too, for
honesty: it makes a temporary for ``s * c`` and a fresh ``a`` (two passes,
five array transfers and page faults on fresh memory), so its "triad GB/s"
is far below the machine's.  It is shown, never used as the roof.  Without
Numba the roof falls back to NumPy's in-place two-step triad.

Both are measured at the start of a run and again at its end; the better of
the two is the roof (``best_of``), so one slow moment of a shared machine
does not inflate every percentage.

GEMM throughput is NumPy's ``matmul`` (the BLAS fastnn's Linear kernels
call) on square matrices, 2 n^3 flops, best of the repeats like the triad;
it is the roof of the Linear rows ("% of GEMM"); smaller products usually
run below it.
"""

import statistics
import time

import numpy as np

DRAM_ELEMENTS = 1 << 24     # 128 MiB per float64 array
CACHE_ELEMENTS = 1 << 18    # 2 MiB per float64 array
GEMM_SIZE = 2048

try:
    import numba
except ImportError:         # the roof then falls back to NumPy
    numba = None

if numba is not None:
    @numba.njit(parallel=True, cache=True, nogil=True)
    def _triad_numba(a, b, c, s):
        for i in numba.prange(a.size):
            a[i] = b[i] + s * c[i]


def _best(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def measure_triad(elements, threads, repeats=10):
    """``{"gbps": best GB/s, "method": ...}`` of a triad over ``elements`` float64."""
    a = np.zeros(elements)
    b = np.full(elements, 1.0)
    c = np.full(elements, 2.0)
    s = 3.0
    moved = 3 * elements * 8
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        _triad_numba(a, b, c, s)                 # compiles (or loads) and faults a in

        def call():
            _triad_numba(a, b, c, s)
        method = f"numba prange, {threads} thread(s)"
    else:
        def call():
            np.multiply(c, s, out=a)
            np.add(a, b, out=a)
        call()
        method = "numpy in place (np.multiply + np.add, out=a): no Numba"
    best, median = _best(call, repeats)
    if not np.all(a[:4] == 7.0):
        raise AssertionError("triad computed a wrong result")
    return {"gbps": moved / best / 1e9, "median_gbps": moved / median / 1e9,
            "bytes_per_array": elements * 8, "method": method}


def measure_numpy_triad(elements, repeats=5):
    """GB/s (STREAM counting) of the one-liner ``a = b + s * c``: a temporary and a fresh ``a``."""
    b = np.full(elements, 1.0)
    c = np.full(elements, 2.0)
    best, median = _best(lambda: b + 3.0 * c, repeats)
    moved = 3 * elements * 8
    return {"gbps": moved / best / 1e9, "median_gbps": moved / median / 1e9,
            "bytes_per_array": elements * 8, "method": "numpy a = b + s * c (allocating)"}


def measure_gemm(dtype, n=GEMM_SIZE, repeats=5):
    """``{"gflops": best GFLOP/s, ...}`` of NumPy's n x n x n matmul in ``dtype``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b                                          # threads up, buffers allocated
    best, median = _best(lambda: a @ b, repeats)
    flops = 2 * n ** 3
    return {"gflops": flops / best / 1e9, "median_gflops": flops / median / 1e9, "n": n,
            "dtype": np.dtype(dtype).name}


def measure(threads, dtypes, quick=True):
    """All roofline figures for one thread count (threads already set by the caller)."""
    figures = {
        "threads": threads,
        "triad_dram": measure_triad(DRAM_ELEMENTS, threads, repeats=12 if quick else 30),
        "triad_cache": measure_triad(CACHE_ELEMENTS, threads, repeats=50 if quick else 200),
        "triad_numpy": measure_numpy_triad(DRAM_ELEMENTS, repeats=3 if quick else 10),
        "gemm": {},
    }
    for dtype in dtypes:
        name = np.dtype(dtype).name
        figures["gemm"][name] = measure_gemm(dtype, repeats=5 if quick else 10)
    return figures


def best_of(first, second):
    """Figures of ``measure`` combined: the higher rate of each, as the machine's limit.

    A single measurement on a shared machine can land in a slow moment; the
    bench measures at start and at the end and keeps the better of each.
    """
    combined = {"threads": first["threads"], "gemm": {}}
    for key in ("triad_dram", "triad_cache", "triad_numpy"):
        a, b = first[key], second[key]
        combined[key] = dict(a if a["gbps"] >= b["gbps"] else b,
                             measured_gbps=[a["gbps"], b["gbps"]])
    for name, a in first["gemm"].items():
        b = second["gemm"].get(name, a)
        combined["gemm"][name] = dict(a if a["gflops"] >= b["gflops"] else b,
                                      measured_gflops=[a["gflops"], b["gflops"]])
    return combined
