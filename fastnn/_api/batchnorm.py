"""The public batch-normalization functions: validation, layout and dispatch.

Kernels see x as a C-contiguous (N, C, S) array (S = 1 for (N, C) input,
the product of the spatial axes otherwise) and write into outputs made here
(see ``_layout`` and the contract in ``fastnn/_backends/__init__.py``).
"""

import numpy as np
from numpy import ndarray

from .. import _registry
from .. import _validate as v
from . import _layout

_F32, _F64 = v.FLOAT_DTYPES

def _batchnorm_input(x):
    x = v.float_array("x", x)
    if x.ndim < 2:
        raise ValueError(f"x: expected an array of shape (N, C) or (N, C, *spatial), "
                         f"got shape {x.shape}")
    v.check_not_empty("x", x)
    return x


def batchnorm_forward(x, weight=None, bias=None, running_mean=None, running_var=None,
                      *, training=True, momentum=0.1, eps=1e-5, out=None, backend=None):
    """Batch normalization over axis 1 (``torch.nn.functional.batch_norm``).

    ``x`` is ``(N, C)`` or ``(N, C, *spatial)``; each channel ``c`` is
    normalized with statistics over every axis but 1, then scaled by
    ``weight[c]`` (gamma) and shifted by ``bias[c]`` (beta)::

        y = (x - mean) / sqrt(var + eps) * weight + bias

    ``weight`` and ``bias`` are ``(C,)`` arrays or None (no scale, no shift).

    Training (``training=True``): mean and the biased variance of the batch.
    When ``running_mean``/``running_var`` are given they are updated in
    place: ``r = (1 - momentum) * r + momentum * batch_stat``, the variance
    term being the unbiased batch variance.  Needs at least 2 values per
    channel.  Evaluation (``training=False``): the running statistics are
    required, used in place of the batch's, and left unchanged.

    Returns ``(y, mean, invstd)``: ``mean`` and ``invstd = 1/sqrt(var + eps)``
    are what ``batchnorm_backward`` needs (in evaluation, those of the
    running statistics).  ``out`` is an optional array of x's shape and
    dtype, sharing no memory with the other arguments, that receives ``y``
    (and is returned as it): reusing one saves a large fresh output's page
    faults on every call.
    """
    kernel = _registry.kernel("batchnorm_forward", backend)
    if _plain_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, out):
        N, C = x.shape[0], x.shape[1]
        shape = (N, C, x.size // (N * C))
        dtype = x.dtype
        absent = _layout.ABSENT[dtype]
        y = np.empty(shape, dtype) if out is None else out.reshape(shape)
        mean, invstd = np.empty(C, dtype), np.empty(C, dtype)
        kernel(x.reshape(shape), absent if weight is None else weight,
               absent if bias is None else bias,
               absent if running_mean is None else running_mean,
               absent if running_var is None else running_var,
               training, momentum, eps, y, mean, invstd)
        return (y.reshape(x.shape) if out is None else out), mean, invstd
    return _checked_forward(kernel, x, weight, bias, running_mean, running_var, training,
                            momentum, eps, out)


def _plain_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, out):
    """The common call, recognized cheaply (see ``_validate``'s fast paths):
    plain arrays, options of the right type and range, and an ``out`` and
    running statistics that provably share memory with nothing else."""
    if (type(training) is not bool or type(x) is not ndarray
            or x.ndim < 2 or not x.flags.carray or type(momentum) is not float
            or type(eps) is not float or not 0.0 <= momentum <= 1.0 or not eps >= 0.0):
        return False
    dtype, C = x.dtype, x.shape[1]
    if (dtype is not _F32 and dtype is not _F64) or not x.size or x.size < 2 * C * training:
        return False
    per_channel = (C,)
    for a in (weight, bias, running_mean, running_var):
        if a is not None and not (type(a) is ndarray and a.dtype is dtype
                                  and a.shape == per_channel and a.flags.carray):
            return False
    if out is not None and not (type(out) is ndarray and out.dtype is dtype
                                and out.shape == x.shape and out.flags.carray
                                and v.apart(out, (x, weight, bias, running_mean, running_var))):
        return False
    if not training:
        return running_mean is not None and running_var is not None
    if running_mean is not None and not v.apart(running_mean, (x, weight, bias, running_var)):
        return False
    return running_var is None or v.apart(running_var, (x, weight, bias))


def _checked_forward(kernel, x, weight, bias, running_mean, running_var, training, momentum,
                     eps, out):
    """Every other call: full checks, then the layout the kernels expect."""
    x = _batchnorm_input(x)
    C = x.shape[1]
    dtype = x.dtype
    weight = v.optional_float_array("weight", weight, dtype, (C,))
    bias = v.optional_float_array("bias", bias, dtype, (C,))
    training = v.flag("training", training)
    # Training updates the running statistics in place; evaluation only reads them.
    stat_check = v.writable_array if training else v.optional_float_array
    if running_mean is not None:
        running_mean = stat_check("running_mean", running_mean, dtype, (C,))
    if running_var is not None:
        running_var = stat_check("running_var", running_var, dtype, (C,))
    momentum = v.real("momentum", momentum, 0.0, 1.0)
    eps = v.real("eps", eps, 0.0)
    if training:
        if x.size // C < 2:
            raise ValueError(f"x: expected more than 1 value per channel in training, "
                             f"got shape {x.shape}")
    else:
        for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
            if stat is None:
                raise ValueError(f"{name}: expected a ({C},) array when "
                                 f"training=False, got None")
    if training:
        # Updated in place: sharing memory with anything else would corrupt it.
        others = dict(x=x, weight=weight, bias=bias, out=out)
        if running_mean is not None:
            for name, other in dict(others, running_var=running_var).items():
                v.disjoint("running_mean", running_mean, name, other)
        if running_var is not None:
            for name, other in others.items():
                v.disjoint("running_var", running_var, name, other)
    if out is not None:
        v.output_array(out, x.shape, dtype, x=x, weight=weight, bias=bias,
                       running_mean=running_mean, running_var=running_var)

    N = x.shape[0]
    shape = (N, C, x.size // (N * C))
    x3 = _layout.rows(x).reshape(shape)
    y3 = _layout.output(out, shape, dtype)
    mean = np.empty(C, dtype)
    invstd = np.empty(C, dtype)
    absent = _layout.absent(dtype)
    if training:
        rm = absent if running_mean is None else _layout.updated(running_mean)
        rv = absent if running_var is None else _layout.updated(running_var)
    else:
        rm, rv = _layout.rows(running_mean), _layout.rows(running_var)
    kernel(x3, absent if weight is None else _layout.rows(weight),
           absent if bias is None else _layout.rows(bias), rm, rv, training, momentum, eps,
           y3, mean, invstd)
    if training:
        if running_mean is not None:
            _layout.write_back(running_mean, rm)
        if running_var is not None:
            _layout.write_back(running_var, rv)
    return _layout.deliver(y3, out, x.shape), mean, invstd


def batchnorm_backward(dy, x, weight, mean, invstd, *, training=True, out=None,
                       backend=None):
    """Gradients of ``batchnorm_forward``: ``(dx, dweight, dbias)``.

    ``dy`` and ``x`` have the forward input's shape; ``weight`` (gamma) is
    the forward's or None; ``mean`` and ``invstd`` are what the forward
    returned.  In training the gradient flows through the batch statistics;
    in evaluation (``training=False``) through a fixed affine map.
    ``dweight`` and ``dbias`` are None when ``weight`` is None.  ``out``
    receives ``dx`` as ``batchnorm_forward``'s ``out`` receives ``y``.
    """
    kernel = _registry.kernel("batchnorm_backward", backend)
    if (type(training) is bool and v.plain_float(x) and x.ndim >= 2
            and x.size and v.plain(dy, x.dtype, x.shape)):
        dtype, C = x.dtype, x.shape[1]
        per_channel = (C,)
        if (v.plain_or_none(weight, dtype, per_channel) and v.plain(mean, dtype, per_channel)
                and v.plain(invstd, dtype, per_channel)
                and (out is None or (v.plain(out, dtype, x.shape)
                                     and v.apart(out, (dy, x, weight, mean, invstd))))):
            N = x.shape[0]
            shape = (N, C, x.size // (N * C))
            dx = np.empty(shape, dtype) if out is None else out.reshape(shape)
            if weight is None:
                absent = _layout.ABSENT[dtype]
                kernel(dy.reshape(shape), x.reshape(shape), absent, mean, invstd, training,
                       dx, absent, absent)
                return (dx.reshape(x.shape) if out is None else out), None, None
            dweight, dbias = np.empty(C, dtype), np.empty(C, dtype)
            kernel(dy.reshape(shape), x.reshape(shape), weight, mean, invstd, training, dx,
                   dweight, dbias)
            return (dx.reshape(x.shape) if out is None else out), dweight, dbias
    return _checked_backward(kernel, dy, x, weight, mean, invstd, training, out)


def _checked_backward(kernel, dy, x, weight, mean, invstd, training, out):
    """Every other call: full checks, then the layout the kernels expect."""
    x = _batchnorm_input(x)
    C = x.shape[1]
    dtype = x.dtype
    dy = v.float_array("dy", dy, dtype)
    v.check_shape("dy", dy, x.shape)
    weight = v.optional_float_array("weight", weight, dtype, (C,))
    mean = v.float_array("mean", mean, dtype)
    v.check_shape("mean", mean, (C,))
    invstd = v.float_array("invstd", invstd, dtype)
    v.check_shape("invstd", invstd, (C,))
    training = v.flag("training", training)
    if out is not None:
        v.output_array(out, x.shape, dtype, dy=dy, x=x, weight=weight, mean=mean,
                       invstd=invstd)

    N = x.shape[0]
    shape = (N, C, x.size // (N * C))
    dx3 = _layout.output(out, shape, dtype)
    if weight is None:
        weight = dweight = dbias = _layout.absent(dtype)
    else:
        weight = _layout.rows(weight)
        dweight, dbias = np.empty(C, dtype), np.empty(C, dtype)
    kernel(_layout.rows(dy).reshape(shape), _layout.rows(x).reshape(shape), weight,
           _layout.rows(mean), _layout.rows(invstd), training, dx3, dweight, dbias)
    dx = _layout.deliver(dx3, out, x.shape)
    if dweight.size == 0:
        return dx, None, None
    return dx, dweight, dbias
