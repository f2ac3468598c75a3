"""``Sequential``: layers applied in order, with the fusions fastnn's kernels offer.

Children are named "0", "1", ... so parameters and buffers carry PyTorch's
keys ("0.weight", "1.running_mean").  Forward plans the pass once per call:

- a ``Linear`` followed by a ``ReLU`` runs as one fused
  ``linear_forward(..., activation="relu")`` (and one fused backward);
- a ``BatchNorm`` whose output stays inside the container writes it into
  a buffer it keeps between calls (``out=``: no fresh array's page faults
  per step), and a ``ReLU`` right after it works in place on that buffer;
- backward hands each layer the gradient the next one returned, so a ReLU
  masks it in place and a BatchNorm writes its dx into a kept buffer.

The container's own output (the last layer's) and the gradient it returns
are never such reused buffers: what the caller holds stays valid.

Test: tests/test_nn_layers.py, tests/test_nn_model.py.
"""

from .activation import ReLU
from .batchnorm import BatchNorm
from .linear import Linear
from .module import Module

# Steps of a planned pass.
_FUSED_LINEAR_RELU, _INPLACE_RELU, _BATCHNORM, _OTHER = range(4)


class Sequential(Module):
    """Layers in order, ``torch.nn.Sequential``'s twin."""

    def __init__(self, *layers):
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers[{index}]: expected a fastnn.nn.Module, got "
                                f"{type(layer).__name__}")
        self.layers = list(layers)
        self._plan = None           # [(kind, first index, last index)] of the last forward

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def forward(self, x):
        layers, last = self.layers, len(self.layers) - 1
        plan = []
        i = 0
        while i <= last:
            layer = layers[i]
            kind = type(layer)
            if kind is Linear and i < last and type(layers[i + 1]) is ReLU:
                x = layer._forward(x, "relu")
                layers[i + 1].output = x
                plan.append((_FUSED_LINEAR_RELU, i, i + 1))
                i += 2
                continue
            if kind is BatchNorm:
                x = layer._forward(x, reuse=i < last)
                plan.append((_BATCHNORM, i, i))
            elif kind is ReLU and 0 < i < last and plan[-1][0] == _BATCHNORM:
                x = layer._forward(x, inplace=True)
                plan.append((_INPLACE_RELU, i, i))
            else:
                x = layer.forward(x)
                plan.append((_OTHER, i, i))
            i += 1
        self._plan = plan
        return x

    def backward(self, grad_output, *, need_input_grad=True):
        """The gradient with respect to the input (None with
        ``need_input_grad=False``: the first layer's input product is
        skipped when it is a Linear)."""
        if self._plan is None:
            raise RuntimeError("Sequential.backward: expected a forward call first "
                               "(backward uses what forward keeps), got none")
        dy = grad_output
        owned = False               # dy is an array of this container's layers, free to overwrite
        layers = self.layers
        for kind, first, last in reversed(self._plan):
            at_input = first == 0
            layer = layers[first]
            if kind == _FUSED_LINEAR_RELU:
                dy = layer.backward(dy, need_input_grad=need_input_grad or not at_input)
                owned = True
            elif kind == _INPLACE_RELU:
                dy = layer._backward(dy, inplace=owned)
            elif kind == _BATCHNORM:
                dy = layer._backward(dy, reuse=not at_input)
                owned = True
            elif at_input and isinstance(layer, (Linear, Sequential)):
                dy = layer.backward(dy, need_input_grad=need_input_grad)
            else:
                dy = layer.backward(dy)
                owned = type(layer) is Linear
        return dy if need_input_grad else None
