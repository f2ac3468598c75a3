"""The NumPy reference backend: the oracle every other backend is tested against.

Clear, vectorized NumPy, written to be read: each module states the forward
and backward formulas of its layer once, at the top.  Correctness beats
speed here, but nothing loops over samples in Python.
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
