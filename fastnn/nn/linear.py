"""``Linear``: y = x @ weight.T + bias, on fastnn's Linear kernels.

Shapes: x (N, in_features), weight (out_features, in_features) (PyTorch's
layout), bias (out_features,), y (N, out_features).  Forward keeps ``input``
(and, fused with a ReLU by ``Sequential``, the ReLU's ``output``, whose sign
is the mask); backward gives dx = dy @ weight, weight.grad = dy.T @ x,
bias.grad = dy summed over the batch, each from one ``linear_backward`` call.

Test: tests/test_nn_layers.py (against torch.nn.Linear and finite differences).
"""

import math
import operator

import numpy as np

import fastnn

from .module import Module, Parameter, check_grad_output, check_input


def positive_int(name, value):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return value


def float_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


class Linear(Module):
    """A fully connected layer, ``torch.nn.Linear``'s twin.

    Initialization is PyTorch's default: weight uniform in ±1/√in_features
    (Kaiming-uniform with a = √5), bias uniform in ±1/√in_features, drawn
    in float64 from ``numpy.random.default_rng(seed)`` and rounded to
    ``dtype``.  ``seed`` is an int (reproducible), a ``numpy.random.Generator``
    (shared by several layers, drawn in construction order) or None (fresh
    entropy).  A Linear that feeds a BatchNorm needs no bias (its β does that
    work): ``bias=False``.
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, seed=None):
        super().__init__()
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias: expected True or False, got {bias!r}")
        self.dtype = float_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, (self.out_features,
                                                            self.in_features)).astype(self.dtype))
        self.bias = (Parameter(rng.uniform(-bound, bound, self.out_features).astype(self.dtype))
                     if bias else None)
        self.input = None           # saved by forward for backward
        self.output = None
        self.activation = None      # "relu" when Sequential fused a ReLU into this layer

    def _own_parameters(self):
        own = [("weight", self.weight)]
        return own + ([("bias", self.bias)] if self.bias is not None else [])

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.dtype}")

    def forward(self, x):
        return self._forward(x, None)

    def _forward(self, x, activation):
        x = check_input("x", x, self.dtype, 2, 2, 1, self.in_features,
                        f"(N, {self.in_features})")
        y = fastnn.linear_forward(x, self.weight.data,
                                  None if self.bias is None else self.bias.data,
                                  activation=activation)
        self.input, self.output, self.activation = x, y, activation
        return y

    def backward(self, grad_output, *, need_input_grad=True):
        """dx (None with ``need_input_grad=False``, which skips its product);
        sets ``weight.grad`` and ``bias.grad``."""
        dy = check_grad_output(grad_output, self.output, "Linear")
        dx, dweight, dbias = fastnn.linear_backward(
            dy, self.input, self.weight.data,
            y=self.output if self.activation == "relu" else None,
            activation=self.activation, has_bias=self.bias is not None,
            need_dx=bool(need_input_grad))
        self.weight.grad = dweight
        if self.bias is not None:
            self.bias.grad = dbias
        return dx
