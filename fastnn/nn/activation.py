"""``ReLU``: y = max(x, 0); dx = dy where y > 0, else 0 (0 at 0, as PyTorch).

Inside a ``Sequential`` a ReLU right after a Linear is fused into the
Linear's kernel (``linear_forward(..., activation="relu")``); after a
BatchNorm it works in place on the BatchNorm's output buffer, and its
backward in place on the gradient the next layer handed it.  NaN stays NaN
forward; the gradient flows only where the output is > 0 (so not at NaN),
the rule of fastnn's fused Linear+ReLU backward.

Test: tests/test_nn_layers.py.
"""

import numpy as np

from .module import Module, check_grad_output


class ReLU(Module):
    """The rectifier, ``torch.nn.ReLU``'s twin."""

    def __init__(self):
        super().__init__()
        self.output = None          # saved by forward: its sign is the mask

    def forward(self, x):
        return self._forward(x, inplace=False)

    def _forward(self, x, inplace):
        x = x if type(x) is np.ndarray else np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x: expected a float32 or float64 array, got dtype {x.dtype}")
        self.output = np.maximum(x, 0, out=x if inplace else None)
        return self.output

    def backward(self, grad_output):
        return self._backward(grad_output, inplace=False)

    def _backward(self, grad_output, inplace):
        dy = check_grad_output(grad_output, self.output, "ReLU")
        # A multiply by the boolean mask: about 20x faster than
        # np.copyto(..., where=) or np.where (docs/PERFORMANCE.md).
        return np.multiply(dy, self.output > 0, out=dy if inplace else None)
