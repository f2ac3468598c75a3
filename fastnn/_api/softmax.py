"""The public softmax and softmax-cross-entropy functions: validation and dispatch."""

import numpy as np

from .. import _registry
from .. import _validate as v

REDUCTIONS = ("mean", "sum", "none")


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
