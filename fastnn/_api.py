"""The public functions: validate every argument, then dispatch to a backend.

Nothing here computes.  Each function checks its arguments (``_validate``),
normalizes options (negative axes, grad_loss, class-index dtype) and calls
the kernel of the chosen backend (``_registry``).  A call that fails
validation raises before any kernel runs, so it changes nothing.

Semantics follow PyTorch's CPU functions (``torch.nn.functional``), so
results can be checked against it and code moved from it.  float32 and
float64 are supported; all floating arguments of one call share one dtype
and the outputs have it.  Arrays may have any strides and memory order.
"""

import numpy as np

from . import _registry
from . import _validate as v

REDUCTIONS = ("mean", "sum", "none")
ACTIVATIONS = (None, "relu")


# ----------------------------------------------------------------------------
# Batch normalization

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
    if out is not None:
        v.output_array(out, x.shape, dtype, x=x, weight=weight, bias=bias,
                       running_mean=running_mean, running_var=running_var)
    return _registry.kernel("batchnorm_forward", backend)(
        x, weight, bias, running_mean, running_var, training, momentum, eps, out)


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
    return _registry.kernel("batchnorm_backward", backend)(
        dy, x, weight, mean, invstd, training, out)


# ----------------------------------------------------------------------------
# Softmax and softmax cross-entropy

def _softmax_args(x, axis):
    x = v.float_array("x", x)
    if x.ndim < 1:
        raise ValueError(f"x: expected an array of at least 1 dimension, got shape {x.shape}")
    v.check_not_empty("x", x)
    return x, v.axis("axis", axis, x.ndim)


def softmax(x, axis=-1, *, backend=None):
    """``exp(x) / sum(exp(x))`` along ``axis``, computed stably (max subtracted)."""
    x, axis = _softmax_args(x, axis)
    return _registry.kernel("softmax", backend)(x, axis)


def log_softmax(x, axis=-1, *, backend=None):
    """``x - logsumexp(x)`` along ``axis``, computed stably."""
    x, axis = _softmax_args(x, axis)
    return _registry.kernel("log_softmax", backend)(x, axis)


def _cross_entropy_args(logits, target, weight, ignore_index, reduction, label_smoothing):
    logits = v.float_array("logits", logits)
    v.check_ndim("logits", logits, 2, "(N, C)")
    v.check_not_empty("logits", logits)
    ignore_index = v.integer("ignore_index", ignore_index)
    target = v.class_target(target, logits, ignore_index)
    weight = v.optional_float_array("weight", weight, logits.dtype, (logits.shape[1],))
    reduction = v.choice("reduction", reduction, REDUCTIONS)
    label_smoothing = v.real("label_smoothing", label_smoothing, 0.0, 1.0)
    return logits, target, weight, ignore_index, reduction, label_smoothing


def softmax_cross_entropy(logits, target, *, weight=None, ignore_index=-100,
                          reduction="mean", label_smoothing=0.0, backend=None):
    """Cross-entropy of ``softmax(logits)`` against ``target``.

    As ``torch.nn.functional.cross_entropy``.  ``logits`` is ``(N, C)``;
    ``target`` is class indices ``(N,)`` (an integer array; entries equal to
    ``ignore_index`` count for nothing) or probabilities ``(N, C)``.
    ``weight`` is an optional ``(C,)`` class weight.  ``reduction="mean"``
    divides by the summed weight of the counted targets (by N for
    probability targets), ``"sum"`` adds, ``"none"`` returns ``(N,)``.
    ``label_smoothing`` in [0, 1] mixes the target with the uniform
    distribution.  A class whose target probability is 0 adds nothing to the
    loss, even where its logit is ``-inf`` (masking stays finite).

    Returns the loss: a 0-d array, or ``(N,)`` for ``reduction="none"``.
    """
    args = _cross_entropy_args(logits, target, weight, ignore_index, reduction,
                               label_smoothing)
    return _registry.kernel("softmax_cross_entropy", backend)(*args)


def softmax_cross_entropy_backward(logits, target, grad_loss=1.0, *, weight=None,
                                   ignore_index=-100, reduction="mean",
                                   label_smoothing=0.0, backend=None):
    """Gradient of ``softmax_cross_entropy`` with respect to ``logits``.

    ``grad_loss`` is the gradient of the loss: a scalar for ``"mean"`` and
    ``"sum"``, an ``(N,)`` array (or a scalar for every row) for ``"none"``.
    For integer targets and the mean this is
    ``(softmax(logits) - onehot(target)) / N * grad_loss``.
    """
    logits, target, weight, ignore_index, reduction, label_smoothing = \
        _cross_entropy_args(logits, target, weight, ignore_index, reduction,
                            label_smoothing)
    N = logits.shape[0]
    if reduction == "none":
        if np.ndim(grad_loss) == 0:
            grad_loss = np.full(N, v.real("grad_loss", np.asarray(grad_loss).item()),
                                logits.dtype)
        else:
            grad_loss = v.float_array("grad_loss", grad_loss, logits.dtype)
            v.check_shape("grad_loss", grad_loss, (N,))
    else:
        if np.ndim(grad_loss) != 0:
            raise ValueError(f"grad_loss: expected a scalar for reduction="
                             f"{reduction!r}, got shape {np.shape(grad_loss)}")
        grad_loss = v.real("grad_loss", np.asarray(grad_loss).item())
    return _registry.kernel("softmax_cross_entropy_backward", backend)(
        logits, target, grad_loss, weight, ignore_index, reduction, label_smoothing)


def softmax_cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100,
                                    reduction="mean", label_smoothing=0.0, out=None,
                                    backend=None):
    """Loss and gradient together: ``(loss, dlogits)``, in one pass over the logits.

    The options and the loss are those of ``softmax_cross_entropy``;
    ``dlogits`` is the gradient of ``loss`` (of ``loss.sum()`` for
    ``reduction="none"``).  ``out`` is an optional ``(N, C)`` array of the
    logits' dtype to receive the gradient; it may be ``logits`` itself, which
    is then overwritten.
    """
    args = _cross_entropy_args(logits, target, weight, ignore_index, reduction,
                               label_smoothing)
    if out is not None:
        v.writable_array("out", out, args[0].dtype, args[0].shape)
        v.check_out(out, args[0], args[1])
    return _registry.kernel("softmax_cross_entropy_with_grad", backend)(*args, out)


# ----------------------------------------------------------------------------
# Linear

def _linear_args(x, weight):
    x = v.float_array("x", x)
    v.check_ndim("x", x, 2, "(N, in_features)")
    v.check_not_empty("x", x)
    weight = v.float_array("weight", weight, x.dtype)
    v.check_ndim("weight", weight, 2, "(out_features, in_features)")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight: expected shape ({weight.shape[0]}, {x.shape[1]}) "
                         f"to match x's {x.shape[1]} input features, got {weight.shape}")
    v.check_not_empty("weight", weight)
    return x, weight


def linear_forward(x, weight, bias=None, *, activation=None, backend=None):
    """``activation(x @ weight.T + bias)``, as ``torch.nn.functional.linear``.

    ``x`` is ``(N, K)``, ``weight`` is ``(M, K)`` (one row per output
    feature), ``bias`` is ``(M,)`` or None; ``activation`` is None or
    ``"relu"``.  Returns ``y`` of shape ``(N, M)``.
    """
    x, weight = _linear_args(x, weight)
    M = weight.shape[0]
    bias = v.optional_float_array("bias", bias, x.dtype, (M,))
    activation = v.choice("activation", activation, ACTIVATIONS)
    return _registry.kernel("linear_forward", backend)(x, weight, bias, activation)


def linear_backward(dy, x, weight, *, y=None, activation=None, has_bias=True,
                    need_dx=True, backend=None):
    """Gradients of ``linear_forward``: ``(dx, dweight, dbias)``.

    ``dy`` is ``(N, M)``.  With ``activation="relu"`` the forward output
    ``y`` is required: ``dy`` flows only where ``y > 0``.  ``dbias`` is None
    when ``has_bias=False`` and ``dx`` is None when ``need_dx=False``.
    """
    x, weight = _linear_args(x, weight)
    N, M = x.shape[0], weight.shape[0]
    dy = v.float_array("dy", dy, x.dtype)
    v.check_shape("dy", dy, (N, M))
    activation = v.choice("activation", activation, ACTIVATIONS)
    if activation == "relu":
        if y is None:
            raise ValueError("y: expected the forward output (needed by "
                             "activation='relu'), got None")
        y = v.float_array("y", y, x.dtype)
        v.check_shape("y", y, (N, M))
    else:
        y = None
    has_bias = v.flag("has_bias", has_bias)
    need_dx = v.flag("need_dx", need_dx)
    return _registry.kernel("linear_backward", backend)(
        dy, x, weight, y, activation, has_bias, need_dx)
