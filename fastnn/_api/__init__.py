"""The public functions: validate every argument, then dispatch to a backend.

Nothing here computes.  Each function checks its arguments (``_validate``),
normalizes options (negative axes, grad_loss, class-index dtype) and calls
the kernel of the chosen backend (``_registry``).  A call that fails
validation raises before any kernel runs, so it changes nothing.

Semantics follow PyTorch's CPU functions (``torch.nn.functional``), so
results can be checked against it and code moved from it.  float32 and
float64 are supported; all floating arguments of one call share one dtype
and the outputs have it.  Arrays may have any strides and memory order.

One module per kernel family: ``batchnorm``, ``softmax``, ``linear``.
"""

from .batchnorm import batchnorm_backward, batchnorm_forward
from .linear import linear_backward, linear_forward
from .softmax import (
    log_softmax,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_with_grad,
)
from .optim import adam_step, sgd_step
