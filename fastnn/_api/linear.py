"""The public Linear-layer functions: validation, layout and dispatch.

Kernels see x as (N, K) rows, the caller's leading axes (``(*, K)``, as
sequence models pass ``(B, T, K)``) folded into N; matrix operands are
passed as BLAS reads them (a transposed view is not copied), outputs are
made here (see ``_layout`` and the contract in ``fastnn/_backends/__init__.py``).
"""

import numpy as np

from .. import _registry
from .. import _validate as v
from . import _layout

ACTIVATIONS = (None, "relu")


def _linear_args(x, weight):
    x = v.float_array("x", x)
    if x.ndim < 1:
        raise ValueError(f"x: expected an array of shape (*, in_features), got shape {x.shape}")
    v.check_not_empty("x", x)
    weight = v.float_array("weight", weight, x.dtype)
    v.check_ndim("weight", weight, 2, "(out_features, in_features)")
    if weight.shape[1] != x.shape[-1]:
        raise ValueError(f"weight: expected shape ({weight.shape[0]}, {x.shape[-1]}) "
                         f"to match x's {x.shape[-1]} input features, got {weight.shape}")
    v.check_not_empty("weight", weight)
    return x, weight


def _plain_pair(x, weight):
    """x (N, K) and weight (M, K): plain arrays of one float dtype (the common
    call, recognized cheaply; see ``_validate``'s fast paths)."""
    return (v.plain_float(x) and x.ndim == 2 and x.size > 0
            and v.plain(weight, x.dtype, (weight.shape[0], x.shape[1]) if type(weight)
                        is np.ndarray and weight.ndim == 2 else None)
            and weight.size > 0)


def _as_matrix(a):
    """(*, F) -> (N, F) as BLAS reads it (a view wherever the layout allows)."""
    if a.ndim != 2:
        a = a.reshape(-1, a.shape[-1])
    return _layout.blas_operand(a)


def linear_forward(x, weight, bias=None, *, activation=None, out=None, backend=None):
    """``activation(x @ weight.T + bias)``, as ``torch.nn.functional.linear``.

    ``x`` is ``(*, K)`` (any leading axes, e.g. ``(N, K)`` or ``(B, T, K)``),
    ``weight`` is ``(M, K)`` (one row per output feature), ``bias`` is
    ``(M,)`` or None; ``activation`` is None or ``"relu"``.  Returns ``y``
    of shape ``(*, M)``; ``out``, an array of that shape and x's dtype
    sharing no memory with the inputs, receives it (a layer reusing its
    output buffer spares a fresh array's page faults).
    """
    kernel = _registry.kernel("linear_forward", backend)
    if (activation is None or activation == "relu") and _plain_pair(x, weight):
        N, M = x.shape[0], weight.shape[0]
        if ((bias is None or v.plain(bias, x.dtype, (M,)))
                and (out is None or (v.plain(out, x.dtype, (N, M))
                                     and v.apart(out, (x, weight, bias))))):
            y = np.empty((N, M), x.dtype) if out is None else out
            kernel(x, weight, _layout.ABSENT[x.dtype] if bias is None else bias,
                   activation is not None, y)
            return y
    x, weight = _linear_args(x, weight)
    M = weight.shape[0]
    bias = v.optional_float_array("bias", bias, x.dtype, (M,))
    activation = v.choice("activation", activation, ACTIVATIONS)
    shape = x.shape[:-1] + (M,)
    if out is not None:
        v.output_array(out, shape, x.dtype, x=x, weight=weight, bias=bias)
    x2 = _as_matrix(x)
    y = _layout.output(out, (x2.shape[0], M), x.dtype)
    kernel(x2, _layout.blas_operand(weight), _layout.optional_rows(bias, x.dtype),
           activation == "relu", y)
    return _layout.deliver(y, out, shape)


def linear_backward(dy, x, weight, *, y=None, activation=None, has_bias=True,
                    need_dx=True, out=None, backend=None):
    """Gradients of ``linear_forward``: ``(dx, dweight, dbias)``.

    ``dy`` is ``(*, M)`` for ``x`` of shape ``(*, K)``.  With
    ``activation="relu"`` the forward output ``y`` is required: ``dy`` flows
    only where ``y > 0``.  ``dbias`` is None when ``has_bias=False`` and
    ``dx`` is None when ``need_dx=False``.  ``out`` is an optional
    ``(dx, dweight, dbias)`` of arrays (or None entries) that receive those
    gradients, sharing no memory with the inputs or each other: an optimizer
    keeping every gradient in one flat buffer gets them written in place.
    """
    kernel = _registry.kernel("linear_backward", backend)
    out_dx, out_dweight, out_dbias = _gradient_outs(out)
    if (out is None and type(has_bias) is bool and type(need_dx) is bool
            and (activation is None or activation == "relu") and _plain_pair(x, weight)):
        (N, K), M, dtype = x.shape, weight.shape[0], x.dtype
        relu = activation is not None
        if v.plain(dy, dtype, (N, M)) and (not relu or v.plain(y, dtype, (N, M))):
            absent_matrix = _layout.ABSENT_MATRIX[dtype]
            dx = np.empty((N, K), dtype) if need_dx else absent_matrix
            dweight = np.empty((M, K), dtype)
            dbias = np.empty(M, dtype) if has_bias else _layout.ABSENT[dtype]
            kernel(dy, x, weight, y if relu else absent_matrix, relu, dx, dweight, dbias)
            return (dx if need_dx else None), dweight, (dbias if has_bias else None)
    x, weight = _linear_args(x, weight)
    M, K = weight.shape
    dtype = x.dtype
    out_shape = x.shape[:-1] + (M,)
    dy = v.float_array("dy", dy, dtype)
    v.check_shape("dy", dy, out_shape)
    activation = v.choice("activation", activation, ACTIVATIONS)
    relu = activation == "relu"
    if relu:
        if y is None:
            raise ValueError("y: expected the forward output (needed by "
                             "activation='relu'), got None")
        y = v.float_array("y", y, dtype)
        v.check_shape("y", y, out_shape)
    has_bias = v.flag("has_bias", has_bias)
    need_dx = v.flag("need_dx", need_dx)
    inputs = dict(dy=dy, x=x, weight=weight, y=y if relu else None)
    wanted = (("dx", out_dx, x.shape, need_dx), ("dweight", out_dweight, (M, K), True),
              ("dbias", out_dbias, (M,), has_bias))
    given = {}
    for name, array, shape, needed in wanted:
        if array is None:
            continue
        if not needed:
            raise ValueError(f"out: expected None for {name}, which this call does not "
                             f"compute, got an array")
        _check_gradient_out(name, array, shape, dtype, inputs, given)
        given[name] = array
    x2 = _as_matrix(x)
    N = x2.shape[0]
    y2 = _layout.rows(y.reshape(N, M)) if relu else _layout.absent_matrix(dtype)
    dx = _layout.output(out_dx, (N, K), dtype) if need_dx else _layout.absent_matrix(dtype)
    dweight = _layout.output(out_dweight, (M, K), dtype)
    dbias = _layout.output(out_dbias, (M,), dtype) if has_bias else _layout.absent(dtype)
    kernel(_as_matrix(dy), x2, _layout.blas_operand(weight), y2, relu, dx, dweight, dbias)
    return ((_layout.deliver(dx, out_dx, x.shape) if need_dx else None),
            _layout.deliver(dweight, out_dweight, (M, K)),
            (_layout.deliver(dbias, out_dbias, (M,)) if has_bias else None))


def _gradient_outs(out):
    """``out`` as (dx, dweight, dbias): None, or a tuple of three arrays or Nones."""
    if out is None:
        return None, None, None
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(f"out: expected None or a tuple (dx, dweight, dbias) of arrays or "
                        f"None, got {type(out).__name__}"
                        + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
    return out


def _check_gradient_out(name, array, shape, dtype, inputs, given):
    """One entry of ``out``: writeable, of the gradient's shape and dtype, apart
    from every input and from the other entries."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray for {name}, got "
                        f"{type(array).__name__}")
    try:
        v.output_array(array, shape, dtype, **inputs, **given)
    except (TypeError, ValueError) as error:
        raise type(error)(f"out: {name}: {str(error).removeprefix('out: ')}") from None
