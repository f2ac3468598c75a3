"""Layers with PyTorch's semantics on fastnn's kernels: ``fastnn.nn``.

``Linear``, ``BatchNorm``, ``ReLU``, ``Sequential`` and the loss
``SoftmaxCrossEntropy``; ``Parameter`` and the ``Module`` base; weights as
``.npz`` files (``Module.save``, ``load``); ``fold_batchnorm`` for
inference.  Every layer computes through fastnn's public functions on the
current backend (``fastnn.use_backend`` applies).  Modules: ``module``
(base, state), ``linear``, ``batchnorm``, ``activation``, ``container``,
``loss``, ``fold``.

Test: tests/test_nn_*.py.
"""

from ._state import read_arrays as load
from .activation import ReLU
from .batchnorm import BatchNorm
from .container import Sequential
from .fold import fold_batchnorm
from .linear import Linear
from .loss import SoftmaxCrossEntropy
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "BatchNorm", "ReLU", "Sequential",
           "SoftmaxCrossEntropy", "fold_batchnorm", "load"]
