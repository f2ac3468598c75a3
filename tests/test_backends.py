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
        assert text == "available" or re.fullmatch(r"(unavailable|partial): \S.*", text,
                                                   re.S), (name, text)
    kernels = fastnn.kernel_status()
    assert list(kernels) == list(KERNELS)
    for kernel, per_backend in kernels.items():
        assert set(per_backend) == set(status)
        for name, text in per_backend.items():
            assert text == "available" or text.startswith("unavailable: "), (kernel, name, text)
            if status[name] == "available":
                assert text == "available", (kernel, name, text)


@pytest.fixture
def partial_backend(monkeypatch):
    """A backend named "partial" that has softmax (numpy's, wrapped) and nothing else."""
    import types
    module = types.ModuleType("fastnn_test_partial_backend")
    reference = _registry.module("numpy")
    module.softmax = lambda x, y: reference.softmax(x, y)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    _registry._known()
    monkeypatch.setitem(_registry._modules, "partial", module.__name__)
    monkeypatch.setattr(_registry, "_resolved", {})
    yield module
    _registry._loaded.pop("partial", None)


def test_partial_backend_runs_what_it_has(partial_backend, monkeypatch, restore_backend):
    status = fastnn.backends()["partial"]
    assert status.startswith("partial: lacks ")
    lacking = status.removeprefix("partial: lacks ").split(", ")
    assert "log_softmax" in lacking and "softmax" not in lacking
    kernels = fastnn.kernel_status()
    assert kernels["softmax"]["partial"] == "available"
    assert kernels["log_softmax"]["partial"].startswith("unavailable: ")
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    assert_outputs(fastnn.softmax(x, backend="partial"), fastnn.softmax(x, backend="numpy"),
                   np.float32)
    # An explicit choice of a kernel it lacks is an error naming the kernel.
    with pytest.raises(RuntimeError, match="'partial' has no kernel log_softmax"):
        fastnn.log_softmax(x, backend="partial")
    with fastnn.use_backend("partial"):
        with pytest.raises(RuntimeError, match="log_softmax"):
            fastnn.log_softmax(x)
    # "auto" skips it for the kernels it lacks, uses it where it comes first.
    monkeypatch.setitem(_registry.FASTEST, "softmax", ("partial", "numpy"))
    monkeypatch.setitem(_registry.FASTEST, "log_softmax", ("partial", "numpy"))
    assert _registry.kernel("softmax", "auto") is partial_backend.softmax
    assert _registry.kernel("log_softmax", "auto") is _registry.module("numpy").log_softmax


def _signature(function):
    """The Python signature, also of a Numba dispatcher (its py_func)."""
    return inspect.signature(getattr(function, "py_func", function))


@pytest.mark.parametrize("name", AVAILABLE_BACKENDS)
def test_backend_implements_the_contract(name):
    """Every kernel a backend has takes exactly the reference's arguments."""
    module, reference = _registry.module(name), _registry.module("numpy")
    for kernel in KERNELS:
        if fastnn.kernel_status()[kernel][name] != "available":
            continue
        assert _signature(getattr(module, kernel)) == _signature(getattr(reference, kernel)), (
            f"{name}.{kernel}{_signature(getattr(module, kernel))} differs from the reference "
            f"{kernel}{_signature(getattr(reference, kernel))}")


WITHOUT_THE_REFERENCE = r"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "fastnn._backends.numpy" or name.startswith("fastnn._backends.numpy."):
            raise ImportError(f"{name} is made unusable for this test")
        return None

sys.meta_path.insert(0, Refuse())
import numpy as np
import fastnn
from tests.opinfo import OPS
from tests.test_ops import check_call

backend = sys.argv[1]
assert fastnn.backends()["numpy"].startswith("unavailable"), fastnn.backends()
calls = 0
for op in OPS:
    if fastnn.kernel_status()[op.name][backend] != "available":
        continue
    for dtype in (np.float32, np.float64):
        for sample in op.samples(dtype):
            check_call(op, sample.kwargs, backend, dtype)
            calls += 1
print(calls)
"""


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_fast_backend_runs_without_the_reference(name):
    """Nothing falls back to the NumPy reference: with the reference made
    unimportable in a fresh process, every sample still runs and matches
    the oracle (an import of it, direct or relative, or a call through the
    registry, would fail)."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else []))
    run = subprocess.run([sys.executable, "-c", WITHOUT_THE_REFERENCE, name],
                         capture_output=True, text=True, env=environment, cwd=REPOSITORY,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout.split()[-1]) > 100


SLEEPING_THREADS = """
import importlib, os, sys
from fastnn import _registry
importlib.import_module("fastnn._backends." + sys.argv[1])
print(_registry.sleeping_threads_requested(), os.environ.get("OMP_WAIT_POLICY"))
"""


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("user_policy", [None, "ACTIVE"])
def test_threaded_backend_asks_for_sleeping_threads_unless_the_user_chose(name, user_policy):
    """Importing a threaded backend records its OMP_WAIT_POLICY request (the
    bench reads the record to tell fastnn's policy from the user's) and sets
    PASSIVE only where the user set nothing."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_policy:
        environment["OMP_WAIT_POLICY"] = user_policy
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else []))
    run = subprocess.run([sys.executable, "-c", SLEEPING_THREADS, name], capture_output=True,
                         text=True, env=environment, cwd=REPOSITORY, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["True", user_policy or "PASSIVE"]


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
        assert kernels._streams(2 * x.nbytes) == (stream_from == 0)
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
