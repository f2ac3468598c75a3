"""The public optimizer-step functions: validation and dispatch.

``sgd_step`` and ``adam_step`` update a parameter and its optimizer state
in place from its gradient, with torch.optim's rules (the formulas are in
``fastnn/_backends/numpy/optim.py``).  Parameters may have any shape and
strides: the kernels get flat C-contiguous views, and an argument that is
not contiguous is copied in and, when updated, copied back.
"""

import numpy as np

from .. import _registry
from .. import _validate as v
from . import _layout

_ABSENT = _layout.ABSENT   # the stand-in the kernels get for an absent state array


def _parameter(param):
    if not isinstance(param, np.ndarray):
        raise TypeError(f"param: expected a numpy.ndarray that can be updated in "
                        f"place, got {type(param).__name__}")
    v.float_array("param", param)
    if not param.flags.writeable:
        raise ValueError("param: expected a writeable array, got a read-only one")
    return param


def _state(name, array, param):
    """A state array of the parameter's shape and dtype, updated in place."""
    if array is None:
        raise ValueError(f"{name}: expected a {param.dtype} array of shape "
                         f"{param.shape}, got None")
    return v.writable_array(name, array, param.dtype, param.shape)


def _check_no_overlap(arrays):
    """No two of the named arrays share memory (the kernel reads and writes each)."""
    items = [(name, a) for name, a in arrays.items() if a is not None]
    for i, (name, a) in enumerate(items):
        for other_name, b in items[i + 1:]:
            if a.flags.owndata and b.flags.owndata and a is not b:
                continue        # two arrays that each own their memory never overlap
            if np.may_share_memory(a, b):
                raise ValueError(f"{other_name}: expected an array sharing no memory "
                                 f"with {name}, got one that overlaps it")


def _flat(array):
    """(1-D C-contiguous aligned array, True if it is a copy)."""
    flags = array.flags
    if flags.c_contiguous and flags.aligned:
        return array.reshape(-1), False
    return np.array(array, order="C").reshape(-1), True


def _run(kernel, updated, read, *scalars):
    """Call ``kernel`` on flat views; copy updated arrays back where copied."""
    flats = []
    for array in updated:
        flats.append(_flat(array))
    grad = _layout.rows(read).reshape(-1)
    arrays = [flat for flat, _ in flats]
    kernel(arrays[0], grad, *arrays[1:], *scalars)
    for array, (flat, copied) in zip(updated, flats):
        if copied:
            array[...] = flat.reshape(array.shape)


def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
             nesterov=False, weight_decay=0.0, first_step=False, backend=None):
    """One step of ``torch.optim.SGD`` on one parameter, in place.

    ``param`` and ``grad`` have one shape and float dtype.  With
    ``momentum`` > 0, ``momentum_buffer`` (the parameter's shape and dtype)
    holds the velocity ``b``: ``first_step=True`` sets it to the gradient
    (as PyTorch starts it), later steps make it
    ``momentum * b + (1 - dampening) * g``; with momentum 0 it is not used
    and may be None.  ``weight_decay`` adds ``weight_decay * param`` to the
    gradient first; ``nesterov`` steps along ``g + momentum * b``.  Then
    ``param -= lr * step``.  Returns None.
    """
    param = _parameter(param)
    grad = v.float_array("grad", grad, param.dtype)
    v.check_shape("grad", grad, param.shape)
    lr = v.real("lr", lr, 0.0)
    momentum = v.real("momentum", momentum, 0.0)
    dampening = v.real("dampening", dampening)
    nesterov = v.flag("nesterov", nesterov)
    weight_decay = v.real("weight_decay", weight_decay, 0.0)
    first_step = v.flag("first_step", first_step)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"nesterov: expected momentum > 0 and dampening 0 for "
                         f"Nesterov momentum, got momentum={momentum}, "
                         f"dampening={dampening}")
    if momentum != 0:
        momentum_buffer = _state("momentum_buffer", momentum_buffer, param)
        _check_no_overlap({"param": param, "grad": grad,
                           "momentum_buffer": momentum_buffer})
        updated = (param, momentum_buffer)
    else:
        _check_no_overlap({"param": param, "grad": grad})
        updated = (param, _ABSENT[param.dtype])
    kernel = _registry.kernel("sgd_step", backend)
    _run(kernel, updated, grad, lr, momentum, dampening, nesterov, weight_decay,
         first_step)


def adam_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, backend=None):
    """One step of ``torch.optim.Adam`` (``decoupled=True``: ``AdamW``), in place.

    ``param``, ``grad`` and the moments ``exp_avg`` (m) and ``exp_avg_sq``
    (v) have one shape and float dtype; ``step`` is the step count after
    this step (1 on the first).  ``m = beta1 m + (1 - beta1) g``,
    ``v = beta2 v + (1 - beta2) g^2``, then
    ``param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)``.
    ``weight_decay`` adds ``weight_decay * param`` to the gradient (Adam's
    L2 form) or, with ``decoupled=True``, first scales the parameter by
    ``1 - lr * weight_decay`` (AdamW).  Returns None.
    """
    param = _parameter(param)
    grad = v.float_array("grad", grad, param.dtype)
    v.check_shape("grad", grad, param.shape)
    exp_avg = _state("exp_avg", exp_avg, param)
    exp_avg_sq = _state("exp_avg_sq", exp_avg_sq, param)
    step = v.integer("step", step)
    if step < 1:
        raise ValueError(f"step: expected the step count after this step (>= 1), got {step}")
    lr = v.real("lr", lr, 0.0)
    beta1 = _beta("beta1", beta1)
    beta2 = _beta("beta2", beta2)
    eps = v.real("eps", eps, 0.0)
    weight_decay = v.real("weight_decay", weight_decay, 0.0)
    decoupled = v.flag("decoupled", decoupled)
    _check_no_overlap({"param": param, "grad": grad, "exp_avg": exp_avg,
                       "exp_avg_sq": exp_avg_sq})
    kernel = _registry.kernel("adam_step", backend)
    _run(kernel, (param, exp_avg, exp_avg_sq), grad, step, lr, beta1, beta2, eps,
         weight_decay, decoupled)


def _beta(name, value):
    value = v.real(name, value, 0.0, 1.0)
    if value == 1.0:
        raise ValueError(f"{name}: expected a value in [0, 1), got {value!r}")
    return value
