"""Who runs in a benchmark: the contender list and the thread settings.

The contenders, in the order tables show them:

- ``numpy``: the idiomatic NumPy baseline (``fastnn.bench.baselines``), the
  denominator of every "x NumPy" speedup;
- ``torch``: PyTorch's CPU functions (``torch.nn.functional``, autograd for
  the backward), only when PyTorch is importable; never a requirement;
- ``fastnn[NAME]``: each fastnn backend that ``fastnn.backends()`` reports
  available, called through the public API with ``backend=NAME``;
  ``fastnn[NAME]+out`` rows call it with a reused ``out=`` buffer, for the
  kernels that take one (not for the ``numpy`` reference backend);
- ``gemm-only``: for Linear kernels, NumPy's bare matrix products without
  bias, ReLU or bias gradient: not a contender but the floor a Linear layer
  can reach (a fused layer should cost the products and nothing more).

Backends come and go (built or not, importable or not): the list is made at
run time, and a backend that is not available is reported with its reason
instead.
"""

import importlib.util
import sys
from dataclasses import dataclass

BASELINE = "numpy"
REFERENCE_BACKEND = "numpy"  # fastnn's readable oracle backend
VARIANTS = ("out",)         # every variant some kernel declares (cases.Kernel.variants)
TORCH = "torch"
BOUND = "gemm-only"


@dataclass(frozen=True)
class Contender:
    name: str               # as shown in tables: "numpy", "torch", "fastnn[numba]", ...
    kind: str               # "baseline", "torch", "fastnn", "bound"
    backend: str = None     # the fastnn backend name for kind "fastnn"
    variant: str = None     # a kernel's alternative fastnn call ("out"), for kind "fastnn"

    def applies_to(self, kernel):
        if self.kind == "bound":
            return kernel.family == "linear"
        return self.variant is None or self.variant in kernel.variants

    def prepare(self, kernel, inputs):
        """``(call, outputs)`` for this contender on ``inputs``, or None if it does not apply.

        ``call`` is a zero-argument function running one kernel call;
        ``outputs(result)`` names the arrays of its result for checking
        (None for the bound, which computes only part of the kernel).
        """
        if self.kind == "baseline":
            return kernel.numpy(inputs), lambda result: kernel.outputs(result, inputs)
        if not self.applies_to(kernel):
            return None
        if self.kind == "fastnn":
            call = kernel.fastnn(inputs, self.backend, self.variant)
            return call, lambda result: kernel.outputs(result, inputs)
        if self.kind == "torch":
            return kernel.torch(_torch(), inputs)
        if self.kind == "bound":
            return kernel.bound(inputs), None
        raise ValueError(f"unknown contender kind {self.kind!r}")


def torch_available():
    return importlib.util.find_spec("torch") is not None


def _torch():
    import torch
    return torch


def fastnn_backends():
    """``{name: status}`` from ``fastnn.backends()``."""
    import fastnn
    return fastnn.backends()


def make_contenders(backends=None, use_torch=True, bound=True):
    """The contender list, and ``{name: reason}`` for every one left out.

    ``backends``: the fastnn backend names to include (default: every
    available one).  Asking for an unknown or unavailable backend is not an
    error here: it is reported among the left-out ones.
    """
    contenders = [Contender(BASELINE, "baseline")]
    skipped = {}
    if use_torch:
        if torch_available():
            _torch()        # imported now, so that set_threads reaches it
            contenders.append(Contender(TORCH, "torch"))
        else:
            skipped[TORCH] = "not installed"
    else:
        skipped[TORCH] = "left out (--no-torch)"
    status = fastnn_backends()
    for name in (backends if backends is not None else status):
        if name not in status:
            skipped[f"fastnn[{name}]"] = f"unknown backend (known: {', '.join(status)})"
        elif status[name] != "available":
            skipped[f"fastnn[{name}]"] = status[name]
        else:
            contenders.append(Contender(f"fastnn[{name}]", "fastnn", name))
            if name != REFERENCE_BACKEND:     # the reference is not meant to be fast
                for variant in VARIANTS:
                    contenders.append(Contender(f"fastnn[{name}]+{variant}", "fastnn", name,
                                                variant))
    if backends is not None:
        for name, state in status.items():
            if name not in backends and state == "available":
                skipped[f"fastnn[{name}]"] = "left out (--backends)"
    if bound:
        contenders.append(Contender(BOUND, "bound"))
    return contenders, skipped


def set_threads(n):
    """Use ``n`` threads everywhere: fastnn's backends, NumPy's BLAS, PyTorch.

    ``fastnn.set_num_threads`` also limits the BLAS NumPy calls (through
    threadpoolctl), so the baseline's matrix products get the same count.
    """
    import fastnn
    fastnn.set_num_threads(n)
    try:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def max_threads():
    """The threads this process may use (its CPU affinity, else the CPU count)."""
    import os
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
