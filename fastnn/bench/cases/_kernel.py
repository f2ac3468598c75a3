"""The shape of a benchmark entry (``Kernel``), its sizes, inputs and the correctness check.

The family modules beside this one (``batchnorm``, ``cross_entropy``,
``linear``) each define their kernels as ``Kernel`` entries; the package's
``__init__`` collects them into ``KERNELS``.  Everything here is shared by
every entry: building a case's inputs from a fixed seed, the float64
reference, and the comparison every contender passes before it is timed.
"""

import functools
import inspect
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Size:
    name: str       # "medium", "large-nchw", ...
    shape: tuple    # what the entry's ``inputs`` builds from: x's shape, (N, C), (N, K, M)
    label: str      # "4096x1024", "256x1024->1024"

    @property
    def tier(self):
        return self.name.split("-")[0]


def shape_size(name, shape):
    """A size labelled by its shape: ``shape_size("medium", (4096, 1024))`` is "4096x1024"."""
    return Size(name, tuple(shape), "x".join(map(str, shape)))


@dataclass(frozen=True)
class MinBytes:
    """Memory-bound cost: the bytes a kernel must move at least (STREAM's counting)."""
    formula: str                         # as the report prints it, e.g. "3 E b"
    count: Callable                      # (shape, itemsize) -> bytes


@dataclass(frozen=True)
class Flops:
    """Compute-bound cost: the floating-point operations of the products."""
    formula: str                         # e.g. "2 N K M"
    count: Callable                      # (shape) -> flops


@dataclass(frozen=True)
class Kernel:
    """One benchmarked operation: everything the report and ``benches/`` need to run it.

    ``numpy`` is the idiomatic NumPy baseline as a plain function whose
    parameters are named after input arrays (they are passed in that
    order); it must return what the fastnn call returns, in the working
    dtype, so that ``outputs`` serves both.  ``fastnn(inputs, backend,
    out)`` and ``torch(torch, inputs)`` return zero-argument calls, built
    once per case so that the timed call does nothing but the kernel
    (``torch`` also returns the map from its result to named outputs).
    """
    name: str                            # "batchnorm_forward_train"
    family: str                          # "batchnorm": selects with --kernels, names a bench file
    title: str                           # one line for the report
    api: object                          # the backend-contract kernel it runs (fastnn._backends.KERNELS),
                                         # or a tuple of those a composite entry (a training step) runs
    sizes: tuple                         # Size ladder, small to large
    quick: tuple                         # size names --quick runs
    inputs: Callable                     # (shape, dtype, rng) -> {name: array}
    numpy: Callable                      # the baseline, parameters named after inputs
    fastnn: Callable                     # (inputs, backend, out) -> call; out: a reused buffer or None
    torch: Callable                      # (torch, inputs) -> (call, result -> {name: array})
    outputs: Callable                    # (result of numpy or fastnn, inputs) -> {name: array}
    cost: object                         # MinBytes or Flops
    mutable: tuple = ()                  # inputs a call updates in place (each contender: copies)
    variants: tuple = ()                 # ("out",): also time fastnn writing into inputs["out"]
    bound: Callable = None               # Linear: (inputs) -> the bare BLAS products alone
    check_size: Size = None              # the size `--benchmark-disable` adds (in float64)
    kernels_only: Callable = None        # variant "kernels": (inputs, backend) -> the same
                                         # kernel calls without the layers around them
    torch_variants: tuple = ()           # ("fused",): also time torch(torch, inputs, variant)

    @property
    def apis(self):
        """Every backend-contract kernel the entry runs."""
        return self.api if isinstance(self.api, tuple) else (self.api,)

    def size(self, name):
        for size in self.sizes:
            if size.name == name:
                return size
        raise KeyError(f"{self.name}: no size named {name!r}")

    def numpy_call(self, inputs):
        """The baseline bound to ``inputs``: a zero-argument call."""
        names = _parameters(self.numpy)
        return functools.partial(self.numpy, *(inputs[name] for name in names))

    def fastnn_call(self, inputs, backend, variant=None):
        if variant == "kernels":
            return self.kernels_only(inputs, backend)
        out = inputs["out"] if variant == "out" else None
        return self.fastnn(inputs, backend, out)

    @property
    def bytes_formula(self):
        return self.cost.formula if isinstance(self.cost, MinBytes) else None

    @property
    def flops_formula(self):
        return self.cost.formula if isinstance(self.cost, Flops) else None

    def min_bytes(self, shape, itemsize):
        return self.cost.count(shape, itemsize) if isinstance(self.cost, MinBytes) else None

    def flops(self, shape):
        return self.cost.count(shape) if isinstance(self.cost, Flops) else None


@functools.lru_cache(maxsize=None)
def _parameters(function):
    return tuple(inspect.signature(function).parameters)


def elements(shape):
    return int(np.prod(shape))


def normal(rng, shape, dtype, scale=1.0, shift=0.0):
    """Seeded normal values in ``dtype``, scaled and shifted in place."""
    dtype = np.dtype(dtype)
    values = rng.standard_normal(shape, dtype=dtype)
    if scale != 1.0:
        values *= dtype.type(scale)
    if shift != 0.0:
        values += dtype.type(shift)
    return values


def case_inputs(kernel, size, dtype):
    """The inputs of ``kernel`` at ``size`` in ``dtype``: the same in every run and process."""
    dtype = np.dtype(dtype)
    seed = zlib.crc32(f"{kernel.name}/{size.name}/{dtype.name}".encode())
    return kernel.inputs(size.shape, dtype, np.random.default_rng(seed))


def reference_outputs(kernel, inputs):
    """The float64 NumPy-baseline outputs for ``inputs`` (which it does not change:
    the arrays it updates in place, float or not, are copies)."""
    inp64 = {name: value.astype(np.float64) if value.dtype.kind == "f"
             else (value.copy() if name in kernel.mutable else value)
             for name, value in inputs.items()}
    return kernel.outputs(kernel.numpy_call(inp64)(), inp64)


TOLERANCE = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-8}


def compare(outputs, reference, dtype):
    """Largest error over the outputs both have, each relative to the reference's scale.

    Returns ``(error, worst output name)``; the error is
    ``max|out - ref| / max(max|ref|, tiny)`` per output.  A missing or
    misshapen output counts as an infinite error.
    """
    worst, worst_name = 0.0, None
    for name, value in outputs.items():
        if name not in reference:
            continue
        ref = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(value)
        if got.shape != ref.shape:
            return float("inf"), f"{name}: shape {got.shape}, expected {ref.shape}"
        if got.size == 0:
            continue
        if not np.all(np.isfinite(got)):
            return float("inf"), f"{name}: not finite"
        scale = max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)
        error = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
        if error > worst or worst_name is None:
            worst, worst_name = error, name
    return worst, worst_name


def within_tolerance(error, dtype):
    return error <= TOLERANCE[np.dtype(dtype)]
