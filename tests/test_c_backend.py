"""The C backend's own guarantees, beyond the conformance suite it shares.

- Each instruction-set variant the CPU can run (``FASTNN_C_ISA``: avx512,
  avx2, baseline) passes every conformance sample in a fresh process, and
  its exp is within its stated accuracy over the whole range x <= 0.
- The kernels' exp (``kernels/template.h``): at most 2 ulp from the
  correctly rounded exp (measured against long double for float64), exact
  0 below the underflow threshold and for -inf, NaN passed through, the
  subnormal range within one unit of the smallest subnormal.
- Results are bitwise identical at 1, 2 and 3 threads (the Linear products
  excepted: BLAS splits them by thread count).
- Kernels release the GIL: a second Python thread runs Python code while
  the first is inside a C kernel (observed, not timed).
- A bad FASTNN_C_ISA makes the backend unavailable with the reason.
"""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import fastnn

from .opinfo import OPS
from .support import AVAILABLE_BACKENDS, assert_bitwise_equal, assert_outputs, copy_kwargs

if "c" not in AVAILABLE_BACKENDS:
    pytest.skip(f"the C backend is {fastnn.backends()['c']}", allow_module_level=True)

from fastnn._backends import c as backend  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
BLAS_BOUND = ("linear_forward", "linear_backward")


def _python(code, *args, **env):
    environment = dict(os.environ, **env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else []))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=environment, cwd=REPOSITORY, timeout=900)


# ------------------------------------------------------------------- exp

# Per dtype: (lowest input with a nonzero result, reference type, bound in ulps).
EXP_RANGES = {
    "float32": (-104.0, np.float64, 2.0),
    "float64": (-745.2, np.longdouble, 2.0),
}


def exp_errors(dtype_name):
    """(worst ulps over normal results, worst subnormal error in units of the
    smallest subnormal, special values ok) of the loaded variant's exp."""
    dtype = np.dtype(dtype_name)
    low, reference_type, _ = EXP_RANGES[dtype_name]
    rng = np.random.default_rng(41)
    x = np.concatenate([np.linspace(low, 0.0, 400_001), np.linspace(-1.0, 0.0, 100_001),
                        rng.uniform(low, 0.0, 200_000)]).astype(dtype)
    got = np.empty_like(x)
    backend.lib.fnn_exp_nonpositive(id(x), id(got), x.itemsize >> 3)
    exact = np.exp(x.astype(reference_type))
    normal = np.abs(got) >= np.finfo(dtype).tiny
    unit = np.spacing(np.abs(exact[normal].astype(dtype))).astype(reference_type)
    ulps = np.abs(got[normal].astype(reference_type) - exact[normal]) / unit
    tiny = np.finfo(dtype).smallest_subnormal
    sub = np.abs(got[~normal].astype(reference_type) - exact[~normal]) / reference_type(tiny)
    special = np.array([-np.inf, -1e4, -800.0, 0.0, -0.0, np.nan], dtype)
    out = np.empty_like(special)
    backend.lib.fnn_exp_nonpositive(id(special), id(out), special.itemsize >> 3)
    special_ok = bool(out[0] == 0 and out[1] == 0 and out[2] == 0 and out[3] == 1
                      and out[4] == 1 and np.isnan(out[5]))
    return float(ulps.max()), float(sub.max(initial=0.0)), special_ok


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_exp_accuracy(dtype_name):
    _, reference_type, bound = EXP_RANGES[dtype_name]
    if np.finfo(reference_type).nmant <= np.finfo(dtype_name).nmant:
        pytest.skip("no wider float type for the float64 reference on this platform")
    worst, subnormal, special_ok = exp_errors(dtype_name)
    assert worst <= bound, f"{worst:.3f} ulp"
    assert subnormal <= 1.0, f"subnormal results off by {subnormal} units"
    assert special_ok


# ---------------------------------------------------------- ISA variants

PER_VARIANT = r"""
import json, sys
import numpy as np
import fastnn
from fastnn._backends import c
from tests.opinfo import OPS
from tests.test_ops import check_call
from tests.test_c_backend import EXP_RANGES, exp_errors

report = {"isa": c.info()["isa"], "status": fastnn.backends()["c"], "calls": 0, "exp": {}}
for op in OPS:
    for dtype in (np.float32, np.float64):
        for sample in op.samples(dtype):
            check_call(op, sample.kwargs, "c", dtype)
            report["calls"] += 1
for name, (_, reference, _) in EXP_RANGES.items():
    if np.finfo(reference).nmant > np.finfo(name).nmant:
        report["exp"][name] = exp_errors(name)
print(json.dumps(report))
"""

# The variant loaded by default runs the whole suite in this process.
OTHER_VARIANTS = [isa for isa in backend.supported_isas().split(",")
                  if isa != backend.info()["isa"]]


@pytest.mark.parametrize("isa", OTHER_VARIANTS)
def test_each_isa_variant_passes_the_conformance_samples(isa):
    run = _python(PER_VARIANT, FASTNN_C_ISA=isa)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["isa"] == isa and report["status"] == "available", report
    assert report["calls"] > 100
    for name, (worst, subnormal, special_ok) in report["exp"].items():
        assert worst <= EXP_RANGES[name][2], f"{isa} {name}: {worst:.3f} ulp"
        assert subnormal <= 1.0 and special_ok, (isa, name, subnormal, special_ok)


def test_bad_isa_makes_the_backend_unavailable_with_the_reason():
    run = _python("import fastnn; print(fastnn.backends()['c'])", FASTNN_C_ISA="sse9")
    assert run.returncode == 0, run.stderr
    assert "unavailable: " in run.stdout and "FASTNN_C_ISA" in run.stdout, run.stdout


# --------------------------------------------------------------- threads

def test_bitwise_at_1_2_and_3_threads(restore_threads):
    checked = 0
    for op in OPS:
        for dtype in (np.float32, np.float64):
            for sample in [s for s in op.samples(dtype) if s.large]:
                results = []
                for threads in (1, 2, 3):
                    fastnn.set_num_threads(threads)
                    kwargs = copy_kwargs(sample.kwargs)
                    result = op.function(**kwargs, backend="c")
                    mutated = tuple(kwargs[name] for name in op.mutable(kwargs)
                                    if kwargs.get(name) is not None)
                    results.append((result, mutated))
                label = f"{op.name} {np.dtype(dtype).name} {sample.desc}"
                for threads, other in zip((2, 3), results[1:]):
                    if op.name in BLAS_BOUND:
                        assert_outputs(other[0], results[0][0], dtype, f"{label}: {threads}")
                    else:
                        assert_bitwise_equal(other, results[0], f"{label}: {threads} vs 1")
                checked += 1
    assert checked > 10


def test_kernels_release_the_gil():
    """While one thread is inside a C kernel, another runs Python code.

    The switch interval is made huge, so the interpreter never takes the GIL
    from a thread running Python: the second thread can only run while the
    first has released it.  The first thread reads the second's counter
    right after the kernel returns; the same protocol around a pure-Python
    loop (which keeps the GIL) must leave the counter at 0, which shows the
    protocol itself lets nothing through.
    """
    logits = np.random.default_rng(5).standard_normal((2048, 4000)).astype(np.float32)
    labels = np.zeros(2048, np.int64)
    args = (logits, labels, np.zeros((0, 0), np.float32), np.zeros(0, np.float32), -100,
            "mean", 0.0, np.zeros(0, np.float32))

    def kernel():
        for _ in range(5):
            backend.softmax_cross_entropy(*args)

    def python_loop():
        total = 0
        for i in range(3_000_000):
            total += i

    def other_thread_progress(work):
        started, done = threading.Event(), threading.Event()
        counter = [0]

        def count():
            started.wait()
            while not done.is_set():
                counter[0] += 1
                os.sched_yield() if hasattr(os, "sched_yield") else None

        worker = threading.Thread(target=count)
        worker.start()
        previous = sys.getswitchinterval()
        sys.setswitchinterval(1000.0)
        try:
            started.set()
            work()
            seen = counter[0]
            done.set()
        finally:
            sys.setswitchinterval(previous)
        worker.join()
        return seen

    assert other_thread_progress(python_loop) == 0
    assert other_thread_progress(kernel) > 0


# ------------------------------------------------------------------ info

def test_info_lists_every_backend_and_the_c_details():
    run = _python("import sys; from fastnn.__main__ import main; sys.exit(main(['info']))")
    assert run.returncode == 0, run.stderr
    for name in fastnn.backends():
        assert f"\n{name}: " in "\n" + run.stdout, run.stdout
    for key in ("isa: ", "openmp: ", "threads: ", "build flags: ", "threading layer: ",
                "cache dir: "):
        assert key in run.stdout, (key, run.stdout)
    assert f"isa: {backend.info()['isa']}" in run.stdout
