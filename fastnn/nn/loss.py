"""``SoftmaxCrossEntropy``: the loss of a softmax classifier, ``torch.nn.CrossEntropyLoss``'s twin.

loss_i = -sum_c q[i, c] * log softmax(logits)[i, c], with q the one-hot
target (or target probabilities), smoothed by ``label_smoothing`` and
weighted by ``weight``; ``reduction`` "mean" (weighted mean over counted
targets), "sum" or "none".  Shapes: logits (N, C); target (N,) class indices
or (N, C) probabilities.

In training mode the loss and its gradient come from one fused
``softmax_cross_entropy_with_grad`` pass; ``backward()`` then returns that
gradient (scaled by ``grad_loss`` when one is given).  In evaluation only
the loss is computed, and ``backward`` computes the gradient on demand.

Test: tests/test_nn_layers.py.
"""

import numpy as np

import fastnn
from fastnn import _validate as v

from .module import Module


class SoftmaxCrossEntropy(Module):
    """``criterion(logits, target)`` -> loss: a Python float for "mean" and
    "sum", an ``(N,)`` array for "none"; ``criterion.backward()`` -> dlogits."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        if weight is not None:
            weight = np.asarray(weight)
            if weight.dtype.kind not in "fiu" or weight.dtype.kind == "b" or weight.ndim != 1:
                raise TypeError(f"weight: expected a 1-D array of class weights, got "
                                f"{weight.dtype} of shape {weight.shape}")
        self.weight = weight
        self._weights = {}          # the class weights in each logits dtype seen
        self.ignore_index = v.integer("ignore_index", ignore_index)
        self.reduction = v.choice("reduction", reduction, ("mean", "sum", "none"))
        self.label_smoothing = v.real("label_smoothing", label_smoothing, 0.0, 1.0)
        # Saved by forward for backward.
        self.logits = self.target = self.dlogits = None

    def _options(self, logits):
        weight = None
        if self.weight is not None:
            dtype = getattr(logits, "dtype", None)
            weight = self._weights.get(dtype)
            if weight is None:
                weight = self.weight.astype(dtype if dtype in v.FLOAT_DTYPES else np.float64)
                self._weights[dtype] = weight
        return dict(weight=weight, ignore_index=self.ignore_index, reduction=self.reduction,
                    label_smoothing=self.label_smoothing)

    def extra_repr(self):
        return (f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}"
                + ("" if self.weight is None else f", weight={self.weight.tolist()}"))

    def forward(self, logits, target):
        if self.training:
            loss, self.dlogits = fastnn.softmax_cross_entropy_with_grad(logits, target,
                                                                        **self._options(logits))
        else:
            loss = fastnn.softmax_cross_entropy(logits, target, **self._options(logits))
            self.dlogits = None
        self.logits, self.target = logits, target
        return float(loss) if self.reduction != "none" else loss

    def backward(self, grad_loss=None):
        """dlogits of the last loss (of ``loss.sum()`` for "none"), times
        ``grad_loss`` when given (a scalar, or ``(N,)`` for "none")."""
        if self.logits is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward: expected a forward call "
                               "first (backward uses what forward keeps), got none")
        if grad_loss is None:
            if self.dlogits is None:
                ones = (1.0 if self.reduction != "none" else
                        np.ones(len(self.logits), np.asarray(self.logits).dtype))
                self.dlogits = fastnn.softmax_cross_entropy_backward(
                    self.logits, self.target, ones, **self._options(self.logits))
            return self.dlogits
        if self.dlogits is not None and self.reduction != "none" and np.ndim(grad_loss) == 0:
            scale = float(grad_loss) if not isinstance(grad_loss, (bool, np.bool_)) else None
            if scale is not None:
                return self.dlogits * self.dlogits.dtype.type(scale)
        return fastnn.softmax_cross_entropy_backward(self.logits, self.target, grad_loss,
                                                     **self._options(self.logits))
