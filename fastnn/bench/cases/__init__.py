"""What is benchmarked: one entry per kernel, in one module per family.

A ``Kernel`` entry (``_kernel.py``) holds everything about one benchmarked
operation: its size ladder and the sizes ``--quick`` runs, how to build
seeded inputs for a size, the idiomatic NumPy baseline (a plain function
in the entry's module, also the float64 oracle every contender is checked
against), the fastnn call through the public API, the PyTorch call, which
outputs to compare, and its cost model (minimum bytes moved, or flops).
``python -m fastnn bench``, its PyTorch worker process and the
pytest-benchmark suite in ``benches/`` all read ``KERNELS`` from here, so
they never disagree.

Adding a kernel (an optimizer step, a training step):

1. In the family's module (``batchnorm.py``, ``cross_entropy.py``,
   ``linear.py``; or a new module named in ``FAMILIES`` below), write the
   NumPy baseline as a plain function whose parameters are named after the
   input arrays, the inputs builder, the fastnn call and the PyTorch call,
   and add one ``Kernel(...)`` to the module's ``KERNELS`` tuple: its
   ``api`` names the backend-contract kernel it runs (so a backend lacking
   that kernel gets no row), ``cost`` is ``MinBytes`` or ``Flops``,
   ``mutable`` lists inputs the call updates in place, ``variants=("out",)``
   adds rows writing into ``inputs["out"]``, ``check_size`` is the size the
   test run checks in float64 (parallel path, several tiles).
2. Optionally, add lines for it to the targets data
   (``fastnn/bench/targets.toml``).
3. A new family also needs a three-line bench file ``benches/bench_<family>.py``
   (``FAMILY = "<family>"``); ``benches/test_bench_tool.py`` fails until it
   exists.  ``python -m pytest benches --benchmark-disable`` then checks the
   new entry against its baseline on every contender.

Size names: ``tiny``, ``small``, ``medium``, ``large`` (and ``-nchw`` for
batch norm over images).  ``tiny`` sizes measure the fixed cost of a whole
API call; ``large`` sizes stream from DRAM.
"""

import importlib

from ._kernel import (  # noqa: F401  (the package's interface)
    TOLERANCE, Flops, Kernel, MinBytes, Size, case_inputs, compare, reference_outputs,
    within_tolerance,
)

FAMILIES = ("batchnorm", "cross_entropy", "linear", "training")


def _collect():
    kernels = {}
    for family in FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        for kernel in module.KERNELS:
            if kernel.name in kernels:
                raise ValueError(f"two benchmark entries are named {kernel.name!r}")
            if kernel.family != family:
                raise ValueError(f"{kernel.name}: family {kernel.family!r} is defined in the "
                                 f"module of {family!r}")
            if not set(kernel.quick) <= {size.name for size in kernel.sizes}:
                raise ValueError(f"{kernel.name}: quick sizes {kernel.quick} are not all in "
                                 f"its ladder")
            kernels[kernel.name] = kernel
    return kernels


KERNELS = _collect()
