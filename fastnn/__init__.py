"""fastnn: fast, exact CPU kernels for the core layers of neural networks.

Batch normalization, softmax with the fused softmax-cross-entropy loss, and
Linear layers, forward and backward, each in interchangeable backends behind
one API: ``numpy`` (the readable reference), ``numba`` (JIT kernels) and
``c`` (cffi).  ``backends()`` says which are available; ``"auto"`` (the
default) picks the fastest per kernel.
"""

from ._api import (
    adam_step,
    batchnorm_backward,
    batchnorm_forward,
    linear_backward,
    linear_forward,
    log_softmax,
    sgd_step,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_with_grad,
)
from ._registry import (
    backends,
    get_backend,
    get_num_threads,
    kernel_status,
    set_backend,
    set_num_threads,
    use_backend,
)
from ._warmup import warmup

__version__ = "0.1.0"

__all__ = [
    "batchnorm_forward", "batchnorm_backward",
    "softmax", "log_softmax",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "softmax_cross_entropy_with_grad",
    "linear_forward", "linear_backward",
    "backends", "kernel_status", "get_backend", "set_backend", "use_backend",
    "get_num_threads", "set_num_threads", "warmup",
    "sgd_step", "adam_step",
    "fit", "History",
]

# The layers, optimizers, training loop and search import on first use, so
# that ``import fastnn`` stays the cost of NumPy and the API.
_LAZY = {"fit": ("training", "fit"), "History": ("training", "History"),
         "nn": ("nn", None), "optim": ("optim", None), "tune": ("tune", None)}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
