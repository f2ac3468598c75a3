"""Who runs in a benchmark: the contender list, per-kernel availability, threads.

The contenders, in the order tables show them:

- ``numpy``: the idiomatic NumPy baseline (each entry's ``numpy`` function
  in ``cases``), the denominator of every "x NumPy" speedup;
- ``torch``: PyTorch's CPU functions (``torch.nn.functional``, autograd for
  the backward), only when PyTorch is installed; never a requirement.
  ``torch+fused`` (the training step): ``torch.optim.Adam(fused=True)``;
  where there are several PyTorch rows, the fastest is the one every
  "x Torch" speedup is taken against;
  ``python -m fastnn bench`` runs it in its own process under the user's
  environment (``worker.py``); ``benches/`` runs it in-process;
- ``fastnn[NAME]``: each fastnn backend that can run, called through the
  public API with ``backend=NAME``, for the kernels that backend has;
  ``fastnn[NAME]+out`` rows call it with a reused ``out=`` buffer, for the
  kernels that take one (not for the ``numpy`` reference backend);
  ``fastnn[NAME]+kernels`` rows (the training step) make the same kernel
  calls on the same arrays without the layers, optimizer and loop: the
  floor the framework's overhead is measured against;
- ``gemm-only``: for Linear kernels, NumPy's bare matrix products without
  bias, ReLU or bias gradient: not a contender but the floor a Linear layer
  can reach (a fused layer should cost the products and nothing more).

Backends come and go (built or not, importable or not, complete or
kernel by kernel): the list is made at run time, a backend that cannot run
is reported with its reason, and one that lacks some kernels gets rows only
for the others (``kernel_availability``; the report lists what is missing).
"""

import importlib.util
import os
import sys
from dataclasses import dataclass

BASELINE = "numpy"
REFERENCE_BACKEND = "numpy"  # fastnn's readable oracle backend
VARIANTS = ("out", "kernels")   # every variant some kernel declares (cases.Kernel.variants)
TORCH = "torch"
TORCH_VARIANTS = ("fused",)     # every torch variant some kernel declares (Kernel.torch_variants)
BOUND = "gemm-only"


@dataclass(frozen=True)
class Contender:
    name: str               # as shown in tables: "numpy", "torch", "fastnn[numba]", ...
    kind: str               # "baseline", "torch", "fastnn", "bound"
    backend: str = None     # the fastnn backend name for kind "fastnn"
    variant: str = None     # a kernel's alternative fastnn call ("out"), for kind "fastnn"
    lacks: frozenset = frozenset()  # contract kernels the backend does not have

    def applies_to(self, kernel):
        if self.kind == "bound":
            return kernel.bound is not None
        if self.kind == "fastnn" and any(api in self.lacks for api in kernel.apis):
            return False
        if self.kind == "torch":
            return self.variant is None or self.variant in kernel.torch_variants
        return self.variant is None or self.variant in kernel.variants

    def prepare(self, kernel, inputs):
        """``(call, outputs)`` for this contender on ``inputs``, or None if it does not apply.

        ``call`` is a zero-argument function running one kernel call;
        ``outputs(result)`` names the arrays of its result for checking
        (None for the bound, which computes only part of the kernel).
        PyTorch is imported here, in this process: the report runs it in
        its worker instead (``worker.py``).
        """
        if not self.applies_to(kernel):
            return None
        if self.kind == "baseline":
            return kernel.numpy_call(inputs), lambda result: kernel.outputs(result, inputs)
        if self.kind == "fastnn":
            call = kernel.fastnn_call(inputs, self.backend, self.variant)
            return call, lambda result: kernel.outputs(result, inputs)
        if self.kind == "torch":
            import torch
            if self.variant is not None:
                return kernel.torch(torch, inputs, variant=self.variant)
            return kernel.torch(torch, inputs)
        if self.kind == "bound":
            return kernel.bound(inputs), None
        raise ValueError(f"unknown contender kind {self.kind!r}")


def torch_available():
    """Whether PyTorch is installed, without importing it here."""
    return importlib.util.find_spec("torch") is not None


def kernel_availability():
    """``{contract kernel: {backend: "available" | "unavailable: <reason>"}}``.

    From ``fastnn.kernel_status()`` where fastnn has it; otherwise every
    backend that ``fastnn.backends()`` calls available has every kernel, and
    a "partial" one lacks the kernels its status names.
    """
    import fastnn
    status_of = getattr(fastnn, "kernel_status", None)
    if status_of is not None:
        return status_of()
    from fastnn._backends import KERNELS
    availability = {kernel: {} for kernel in KERNELS}
    for backend, status in fastnn.backends().items():
        lacking = ()
        if status.startswith("partial: lacks "):
            lacking = {k.strip() for k in status[len("partial: lacks "):].split(",")}
        for kernel in KERNELS:
            if status == "available" or (status.startswith("partial") and kernel not in lacking):
                availability[kernel][backend] = "available"
            else:
                reason = status if not status.startswith("partial") else \
                    "unavailable: this backend does not implement it"
                availability[kernel][backend] = reason
    return availability


def fastnn_backends():
    """``{name: status}`` from ``fastnn.backends()``."""
    import fastnn
    return fastnn.backends()


def make_contenders(backends=None, use_torch=True, bound=True):
    """The contender list, ``{name: reason}`` for every one left out, and
    ``{name: {contract kernel: reason}}`` for kernels a run backend lacks.

    ``backends``: the fastnn backend names to include (default: every
    available one).  Asking for an unknown or unavailable backend is not an
    error here: it is reported among the left-out ones.
    """
    contenders = [Contender(BASELINE, "baseline")]
    skipped, lacking = {}, {}
    if use_torch:
        if torch_available():
            contenders.append(Contender(TORCH, "torch"))
            for variant in TORCH_VARIANTS:
                contenders.append(Contender(f"{TORCH}+{variant}", "torch", variant=variant))
        else:
            skipped[TORCH] = "not installed"
    else:
        skipped[TORCH] = "left out (--no-torch)"
    status = fastnn_backends()
    availability = kernel_availability()
    for name in (backends if backends is not None else status):
        label = f"fastnn[{name}]"
        if name not in status:
            skipped[label] = f"unknown backend (known: {', '.join(status)})"
            continue
        missing = {kernel: states.get(name, "unavailable: unknown")
                   for kernel, states in availability.items()
                   if states.get(name) != "available"}
        if len(missing) == len(availability):
            skipped[label] = status[name]
            continue
        if missing:
            lacking[label] = missing
        lacks = frozenset(missing)
        contenders.append(Contender(label, "fastnn", name, lacks=lacks))
        if name != REFERENCE_BACKEND:     # the reference is not meant to be fast
            for variant in VARIANTS:
                contenders.append(Contender(f"{label}+{variant}", "fastnn", name, variant,
                                            lacks=lacks))
    if backends is not None:
        for name, state in status.items():
            if name not in backends and not state.startswith("unavailable"):
                skipped[f"fastnn[{name}]"] = "left out (--backends)"
    if bound:
        contenders.append(Contender(BOUND, "bound"))
    return contenders, skipped, lacking


def set_threads(n):
    """Use ``n`` threads in this process: fastnn's backends, NumPy's BLAS, PyTorch if loaded.

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
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
