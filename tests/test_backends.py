"""The backend registry: which backends must exist, what makes one a drop-in, how one is chosen.

- numpy and numba must be available (numba is a core dependency: its absence
  FAILS here, it is not skipped), and so must every backend named in the
  FASTNN_REQUIRE_BACKENDS environment variable (comma list, e.g. "c" on a
  CI machine that builds the C kernels);
- every backend module defines every kernel of ``fastnn._backends.KERNELS``
  with the NumPy reference's signature, and a fast backend's kernels are its
  own (not the reference's, and its package never imports the reference);
- numba results are bitwise identical at 1 and 2 threads, and batch norm's
  channel-at-a-time mode gives the bits of its pass-by-pass mode;
- the choice of backend: ``backend=``, ``use_backend``, ``set_backend``,
  ``FASTNN_BACKEND`` (in a subprocess), ``"auto"``; unknown names are a
  ValueError listing the known ones, unavailable ones a RuntimeError with the
  reason; threads; ``warmup``.
Dispatch is observed through ``fastnn._registry.kernel``, the function every
public call uses to find its kernel.
"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import _registry
from fastnn._backends import KERNELS

from .opinfo import OPS
from .support import (AVAILABLE_BACKENDS, BACKEND_STATUS, assert_bitwise_equal,
                      assert_outputs, copy_kwargs)

REPOSITORY = Path(__file__).resolve().parents[1]
REQUIRED = sorted({"numpy", "numba"} | {
    name.strip() for name in os.environ.get("FASTNN_REQUIRE_BACKENDS", "").split(",")
    if name.strip()})
UNAVAILABLE = [name for name in BACKEND_STATUS if name not in AVAILABLE_BACKENDS]
FAST_BACKENDS = [name for name in AVAILABLE_BACKENDS if name != "numpy"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_backend_is_available(name):
    status = fastnn.backends().get(name, "unknown to fastnn.backends()")
    assert status == "available", f"backend {name!r} is required but {status}"


def test_backend_status_format():
    status = fastnn.backends()
    assert {"numpy", "numba", "c"} <= set(status)
    for name, text in status.items():
        assert text == "available" or re.fullmatch(r"unavailable: \S.*", text, re.S), (name, text)


def _signature(function):
    """The Python signature, also of a Numba dispatcher (its py_func)."""
    return inspect.signature(getattr(function, "py_func", function))


@pytest.mark.parametrize("name", AVAILABLE_BACKENDS)
def test_backend_implements_the_contract(name):
    module, reference = _registry.module(name), _registry.module("numpy")
    for kernel in KERNELS:
        assert callable(getattr(module, kernel, None)), f"{name} lacks {kernel}"
        assert _signature(getattr(module, kernel)) == _signature(getattr(reference, kernel)), (
            f"{name}.{kernel}{_signature(getattr(module, kernel))} differs from the reference "
            f"{kernel}{_signature(getattr(reference, kernel))}")


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_fast_backend_kernels_are_its_own(name):
    """Nothing falls back to the NumPy reference: not a re-export, not an import."""
    module, reference = _registry.module(name), _registry.module("numpy")
    for kernel in KERNELS:
        function = getattr(module, kernel)
        assert function is not getattr(reference, kernel), f"{name}.{kernel} is numpy's"
        home = getattr(getattr(function, "py_func", function), "__module__", "") or ""
        assert not home.startswith(reference.__name__), f"{name}.{kernel} comes from {home}"
    package = Path(module.__file__).parent
    sources = package.glob("**/*.py") if module.__file__.endswith("__init__.py") else [
        Path(module.__file__)]
    importing = re.compile(r"^\s*(from|import)\s+(fastnn\._backends\.numpy|\.\.numpy|"
                           r"\.\.\.backends\.numpy)\b", re.M)
    for source in sources:
        assert not importing.search(source.read_text()), f"{source} imports the numpy backend"


# The Linear kernels hand their matrix products to BLAS, and OpenBLAS splits a
# product differently for 1 and 2 threads (float32 sums then differ in the
# last bits).  For them the thread count may change the products, within
# float tolerance; a repeated call at one thread count is still bitwise equal.
BLAS_BOUND = ("linear_forward", "linear_backward")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_numba_bitwise_across_thread_counts(op, dtype, restore_threads):
    """Blocks of fixed size reduced in a fixed order: the thread count changes nothing."""
    if "numba" not in AVAILABLE_BACKENDS:
        pytest.fail("numba backend unavailable (test_required_backend_is_available says why)")
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba's thread pool has one thread on this machine")
    for sample in [s for s in op.samples(dtype) if s.large]:
        results = []
        for threads in (1, 2, 1):
            fastnn.set_num_threads(threads)
            assert numba.get_num_threads() == threads
            kwargs = copy_kwargs(sample.kwargs)
            result = op.function(**kwargs, backend="numba")
            mutated = tuple(kwargs[name] for name in op.mutable(kwargs)
                            if kwargs.get(name) is not None)
            results.append((result, mutated))
        assert_bitwise_equal(results[0], results[2], f"{sample.desc}: 1 thread, twice")
        if op.name in BLAS_BOUND:
            assert_outputs(results[1][0], results[0][0], dtype,
                           f"{sample.desc}: 1 thread vs 2 (BLAS products)")
        else:
            assert_bitwise_equal(results[0], results[1], f"{sample.desc}: 1 thread vs 2")


@pytest.mark.parametrize("shape", [(8, 8, 64, 64), (64, 8, 48, 48)], ids=str)
def test_numba_batchnorm_channel_at_a_time_same_bits(shape, dtype, monkeypatch):
    """Training batch norm run channel at a time gives the bits of pass by pass."""
    if "numba" not in AVAILABLE_BACKENDS:
        pytest.fail("numba backend unavailable (test_required_backend_is_available says why)")
    import importlib
    kernels = importlib.import_module("fastnn._backends.numba.batchnorm")
    rng = np.random.default_rng(37)
    x, dy = (rng.standard_normal(shape).astype(dtype) + 2.0 for _ in range(2))
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))

    def run():
        running = [np.zeros(shape[1], dtype), np.ones(shape[1], dtype)]
        y, mean, invstd = fastnn.batchnorm_forward(x, weight, bias, *running, momentum=0.1,
                                                   backend="numba")
        grads = fastnn.batchnorm_backward(dy, x, weight, mean, invstd, backend="numba")
        return (y, mean, invstd, *running, *grads)

    x3 = x.reshape(shape[0], shape[1], -1)
    assert kernels._by_channel(x3, 1, kernels._FORWARD_MIN_CHANNEL_BYTES)
    assert kernels._by_channel(x3, 2)
    by_channel = run()
    monkeypatch.setattr(kernels, "_CHANNEL_CACHE_BYTES", 0)
    assert not kernels._by_channel(x3, 1)
    assert_bitwise_equal(by_channel, run(), "channel at a time vs pass by pass")


@pytest.mark.parametrize("shape", [(700, 3001), (24, 16, 57, 57), (16, 8, 64, 64)], ids=str)
def test_numba_batchnorm_streaming_stores_same_bits(shape, dtype, monkeypatch):
    """Outputs written with streaming stores (large outputs) have the bits of
    plain stores, misaligned row starts and short tails included."""
    if "numba" not in AVAILABLE_BACKENDS:
        pytest.fail("numba backend unavailable (test_required_backend_is_available says why)")
    import importlib
    kernels = importlib.import_module("fastnn._backends.numba.batchnorm")
    rng = np.random.default_rng(38)
    x, dy = (rng.standard_normal(shape).astype(dtype) - 1.5 for _ in range(2))
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))

    def run(stream_from):
        monkeypatch.setattr(kernels, "_STREAM_MIN_BYTES", stream_from)
        assert kernels._streams(x) == (stream_from == 0)
        results = []
        for training in (True, False):
            running = [np.zeros(shape[1], dtype), np.ones(shape[1], dtype)]
            y, mean, invstd = fastnn.batchnorm_forward(x, weight, bias, *running,
                                                       training=training, backend="numba")
            grads = fastnn.batchnorm_backward(dy, x, weight, mean, invstd, training=training,
                                              backend="numba")
            results += [y, mean, invstd, *running, *grads]
        return tuple(results)

    assert_bitwise_equal(run(0), run(1 << 62), "streaming vs plain stores")


# ------------------------------------------------------------- choosing

def _kernel_of(backend, kernel="softmax"):
    return getattr(_registry.module(backend), kernel)


def test_use_backend_scopes_and_restores():
    other = FAST_BACKENDS[0] if FAST_BACKENDS else "auto"
    outside = fastnn.get_backend()
    with fastnn.use_backend("numpy") as name:
        assert name == "numpy" and fastnn.get_backend() == "numpy"
        assert _registry.kernel("softmax") is _kernel_of("numpy")
        with fastnn.use_backend(other):
            assert fastnn.get_backend() == other
        assert fastnn.get_backend() == "numpy"
        # The per-call argument beats the block.
        if other != "auto":
            assert _registry.kernel("softmax", other) is _kernel_of(other)
    assert fastnn.get_backend() == outside
    with pytest.raises(KeyError):
        with fastnn.use_backend("numpy"):
            raise KeyError("inside")
    assert fastnn.get_backend() == outside


def test_set_backend(restore_backend):
    fastnn.set_backend("numpy")
    assert fastnn.get_backend() == "numpy"
    assert _registry.kernel("log_softmax") is _kernel_of("numpy", "log_softmax")
    for name in FAST_BACKENDS:
        fastnn.set_backend(name)
        assert _registry.kernel("log_softmax") is _kernel_of(name, "log_softmax")
    fastnn.set_backend("auto")
    assert fastnn.get_backend() == "auto"


@pytest.mark.parametrize("kernel", KERNELS)
def test_auto_picks_an_available_backend(kernel):
    chosen = _registry.kernel(kernel, "auto")
    owners = [name for name in AVAILABLE_BACKENDS if _kernel_of(name, kernel) is chosen]
    assert owners, f"auto chose {chosen!r}, no available backend's {kernel}"
    if FAST_BACKENDS:
        assert owners != ["numpy"], f"auto fell back to numpy for {kernel}"


def test_unknown_backend_name_lists_known_ones(restore_backend):
    x = np.ones((2, 3), np.float32)
    for attempt in (lambda: fastnn.set_backend("nope"),
                    lambda: fastnn.use_backend("nope").__enter__(),
                    lambda: fastnn.softmax(x, backend="nope")):
        with pytest.raises(ValueError) as info:
            attempt()
        assert all(name in str(info.value) for name in BACKEND_STATUS), str(info.value)


@pytest.mark.parametrize("name", UNAVAILABLE or [pytest.param(None, marks=pytest.mark.skip(
    reason="every known backend is available here"))])
def test_unavailable_backend_is_a_runtime_error(name, restore_backend):
    reason = BACKEND_STATUS[name].removeprefix("unavailable: ")
    x = np.ones((2, 3), np.float32)
    for attempt in (lambda: fastnn.softmax(x, backend=name),
                    lambda: fastnn.set_backend(name),
                    lambda: fastnn.use_backend(name).__enter__(),
                    lambda: fastnn.warmup([name])):
        with pytest.raises(RuntimeError, match=re.escape(reason)):
            attempt()


def _run_python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "FASTNN_BACKEND"}
    environment.update(env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else []))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=REPOSITORY, timeout=120)


DISPATCH_PROBE = """
import numpy as np, fastnn
from fastnn import _registry
print(fastnn.get_backend())
y = fastnn.softmax(np.ones((2, 3)))
print(_registry.kernel("softmax").__module__)
"""


def test_default_backend_is_auto_in_a_fresh_process():
    run = _run_python(DISPATCH_PROBE)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "auto"


@pytest.mark.parametrize("name", AVAILABLE_BACKENDS)
def test_fastnn_backend_environment_variable(name):
    run = _run_python(DISPATCH_PROBE, FASTNN_BACKEND=name)
    assert run.returncode == 0, run.stderr
    chosen, home = run.stdout.splitlines()
    assert chosen == name
    assert home.startswith(_registry.module(name).__name__)


def test_fastnn_backend_environment_variable_unknown():
    run = _run_python(DISPATCH_PROBE, FASTNN_BACKEND="nope")
    assert run.returncode != 0
    assert "ValueError" in run.stderr and "FASTNN_BACKEND" in run.stderr
    assert all(name in run.stderr for name in BACKEND_STATUS)


@pytest.mark.parametrize("name", UNAVAILABLE or [pytest.param(None, marks=pytest.mark.skip(
    reason="every known backend is available here"))])
def test_fastnn_backend_environment_variable_unavailable(name):
    run = _run_python(DISPATCH_PROBE, FASTNN_BACKEND=name)
    assert run.returncode != 0 and "RuntimeError" in run.stderr, run.stderr


def test_import_loads_no_backend():
    """Backends import on first use: ``import fastnn`` stays light and compiles nothing."""
    run = _run_python("import sys, fastnn; "
                      "print(sorted(m for m in sys.modules if m.startswith('fastnn._backends.')))")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# ------------------------------------------------------------ threads, warmup

def test_num_threads(restore_threads):
    fastnn.set_num_threads(1)
    assert fastnn.get_num_threads() == 1
    with pytest.raises(ValueError, match=r"^n\b"):
        fastnn.set_num_threads(0)
    with pytest.raises(TypeError, match=r"^n\b"):
        fastnn.set_num_threads(1.5)
    assert fastnn.get_num_threads() == 1


def test_warmup():
    timings = fastnn.warmup(["numpy"])
    assert list(timings) == ["numpy"] and timings["numpy"] >= 0
    timings = fastnn.warmup()
    assert sorted(timings) == sorted(AVAILABLE_BACKENDS)
    assert all(isinstance(t, float) and t >= 0 for t in timings.values())
