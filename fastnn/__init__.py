"""fastnn: fast, exact CPU kernels for the core layers of neural networks.

Batch normalization, softmax with the fused softmax-cross-entropy loss, and
Linear layers, forward and backward, each in interchangeable backends behind
one API: ``numpy`` (the readable reference), ``numba`` (JIT kernels) and
``c`` (cffi).  ``backends()`` says which are available; ``"auto"`` (the
default) picks the fastest per kernel.
"""

from ._api import (
    batchnorm_backward,
    batchnorm_forward,
    linear_backward,
    linear_forward,
    log_softmax,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_with_grad,
)
from ._registry import (
    backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from ._warmup import warmup
from ._api import adam_step, sgd_step

__version__ = "0.1.0"

__all__ = [
    "batchnorm_forward", "batchnorm_backward",
    "softmax", "log_softmax",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
    "softmax_cross_entropy_with_grad",
    "linear_forward", "linear_backward",
    "backends", "get_backend", "set_backend", "use_backend",
    "get_num_threads", "set_num_threads", "warmup",
    "sgd_step", "adam_step",
]
from .training import History, fit
__all__ += ["fit", "History"]
