"""The layer base: ``Parameter`` (a learned array and its gradient) and
``Module`` (train/eval, parameters and buffers by PyTorch's names, state).

A module holds parameters (learned: ``.data`` and ``.grad``, NumPy arrays)
apart from buffers (running statistics, ``num_batches_tracked``: state that
is saved but not learned).  Names are attribute paths, as PyTorch's:
``"0.weight"`` is the weight of the first layer of a Sequential,
``"1.running_mean"`` a buffer of the second.  That is what makes a
``state_dict`` move between fastnn and PyTorch.

A layer's ``forward(x)`` returns its output and keeps, as named attributes,
what its ``backward(grad_output)`` needs; ``backward`` returns the gradient
with respect to the input and *sets* (does not add to) each parameter's
``.grad``.

Test: tests/test_nn_*.py.
"""

import numpy as np

from . import _state


class Parameter:
    """A learned array (``data``) and the gradient of the loss for it (``grad``).

    ``grad`` is None until a backward pass sets it.  Optimizers may replace
    ``data`` by a view of the same values in a buffer they own (so one kernel
    call updates many parameters); read it through the Parameter each time.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base of every layer, container and loss."""

    def __init__(self):
        self.training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    # ---------------------------------------------------------- structure

    def children(self):
        """``[(name, module)]`` of the modules directly inside this one."""
        return []

    def _own_parameters(self):
        """``[(name, Parameter)]`` held by this module itself, in PyTorch's order."""
        return []

    def _own_buffers(self):
        """``[(name, array)]`` of this module's buffers, in PyTorch's order."""
        return []

    def modules(self):
        """This module and every module inside it, depth first."""
        found = [self]
        for _, child in self.children():
            found.extend(child.modules())
        return found

    def named_parameters(self, prefix=""):
        """``[(name, Parameter)]``, PyTorch's names (``"0.weight"``)."""
        named = [(prefix + name, p) for name, p in self._own_parameters()]
        for name, child in self.children():
            named.extend(child.named_parameters(f"{prefix}{name}."))
        return named

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        named = [(prefix + name, b) for name, b in self._own_buffers()]
        for name, child in self.children():
            named.extend(child.named_buffers(f"{prefix}{name}."))
        return named

    def _state_arrays(self, prefix=""):
        """``[(key, array)]`` in PyTorch's state_dict order: per module its
        parameters' data, then its buffers, then its children's."""
        entries = [(prefix + name, p.data) for name, p in self._own_parameters()]
        entries += [(prefix + name, b) for name, b in self._own_buffers()]
        for name, child in self.children():
            entries.extend(child._state_arrays(f"{prefix}{name}."))
        return entries

    # ------------------------------------------------------- mode, grads

    def train(self, mode=True):
        """Training mode (``mode=True``) or evaluation; for every module inside."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode: expected True or False, got {mode!r}")
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (``grad = None``)."""
        for p in self.parameters():
            p.grad = None

    # -------------------------------------------------------------- state

    def state_dict(self):
        """``{key: array}`` with PyTorch's keys: parameters and buffers.

        The arrays are copies: later training does not change a state taken
        now (early stopping keeps the best weights this way).
        """
        return {key: np.array(array, copy=True) for key, array in self._state_arrays()}

    def load_state_dict(self, state, strict=True):
        """Copy ``state`` (any mapping of key to array, e.g. an ``np.load``
        result) into this module's parameters and buffers, in place.

        Every entry is checked before anything is written: with ``strict``
        a missing or unexpected key is a ValueError naming it; a wrong shape
        or dtype always is.  ``{k: v.numpy() for k, v in
        torch_model.state_dict().items()}`` loads into the same architecture.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        return _state.load_into(self._state_arrays(), state, strict)

    def save(self, path):
        """Write ``state_dict()`` to ``path`` as an uncompressed ``.npz``
        archive (plain arrays, no pickles); read it with ``fastnn.nn.load``."""
        _state.write_arrays(path, self.state_dict())

    def extra_repr(self):
        return ""

    def __repr__(self):
        inner = self.children()
        if not inner:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in inner]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def check_input(name, x, dtype, ndim_min, ndim_max, axis, size, meaning):
    """``x`` as an ndarray of the layer's dtype with ``size`` along ``axis``."""
    array = x if type(x) is np.ndarray else np.asarray(x)
    if array.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the layer's), got {array.dtype}")
    if not ndim_min <= array.ndim <= ndim_max or array.shape[axis] != size:
        raise ValueError(f"{name}: expected shape {meaning}, got {array.shape}")
    return array


def check_grad_output(grad_output, output, layer):
    """The gradient of a layer's last output: that output's shape and dtype."""
    if output is None:
        raise RuntimeError(f"{layer}.backward: expected a forward call first (backward "
                           f"uses what forward keeps), got none")
    array = grad_output if type(grad_output) is np.ndarray else np.asarray(grad_output)
    if array.dtype != output.dtype:
        raise TypeError(f"grad_output: expected dtype {output.dtype} (the layer's), "
                        f"got {array.dtype}")
    if array.shape != output.shape:
        raise ValueError(f"grad_output: expected shape {output.shape} (the last "
                         f"forward's output), got {array.shape}")
    return array
