"""The public softmax and softmax-cross-entropy functions: validation, layout, dispatch.

Kernels see rows: softmax an (R, L) C-contiguous array with the softmax axis
last; cross-entropy (N, C) logits, where a segmentation input
(N, C, d1, ..., dk) has its class axis moved last and its extra axes folded
into the rows, with class labels or probabilities in the same row order.
Results are put back in the caller's shapes here (see ``_layout`` and the
contract in ``fastnn/_backends/__init__.py``).
"""

from collections import namedtuple

import numpy as np
from numpy import ndarray

from .. import _registry
from .. import _validate as v
from . import _layout

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- softmax

def _softmax(x, axis, kernel_name, backend):
    x = v.float_array("x", x)
    if x.ndim < 1:
        raise ValueError(f"x: expected an array of at least 1 dimension, got shape {x.shape}")
    v.check_not_empty("x", x)
    axis = v.axis("axis", axis, x.ndim)
    kernel = _registry.kernel(kernel_name, backend)
    moved = x if axis == x.ndim - 1 else np.moveaxis(x, axis, -1)
    length = moved.shape[-1]
    rows = _layout.rows(moved).reshape(-1, length)
    y = np.empty(moved.shape, x.dtype)
    kernel(rows, y.reshape(rows.shape))
    return y if axis == x.ndim - 1 else np.moveaxis(y, -1, axis)


def softmax(x, axis=-1, *, backend=None):
    """``exp(x) / sum(exp(x))`` along ``axis``, computed stably (max subtracted)."""
    return _softmax(x, axis, "softmax", backend)


def log_softmax(x, axis=-1, *, backend=None):
    """``x - logsumexp(x)`` along ``axis``, computed stably."""
    return _softmax(x, axis, "log_softmax", backend)


# ---------------------------------------------------------- cross-entropy

# A call in the kernels' terms: logits as (rows, C) rows, exactly one of
# labels (rows,) and probs (rows, C) given (the other a stand-in), and the
# caller's logits shape to put results back in.
_Call = namedtuple("_Call", "logits labels probs weight ignore_index reduction "
                            "label_smoothing shape original")


_INT64 = np.dtype(np.int64)
_F32, _F64 = v.FLOAT_DTYPES
_INT64_RANGE = (-(1 << 63), 1 << 63)


def _plain_call(logits, target, weight, ignore_index, reduction, label_smoothing):
    """The common call, recognized with a few attribute reads (see
    ``_validate``'s fast paths): 2-D plain logits, int64 labels, no or plain
    weights, options of the right type.  None when it is not that call."""
    if (type(logits) is not ndarray or logits.ndim != 2 or not logits.flags.carray
            or type(target) is not ndarray or target.dtype is not _INT64
            or type(ignore_index) is not int or type(label_smoothing) is not float
            or not 0.0 <= label_smoothing <= 1.0 or reduction not in REDUCTIONS):
        return None
    dtype = logits.dtype
    N, C = logits.shape
    if ((dtype is not _F32 and dtype is not _F64) or not N or not C
            or target.shape != (N,) or not target.flags.carray
            or not _INT64_RANGE[0] <= ignore_index < _INT64_RANGE[1]):
        return None
    if weight is None:
        weight = _layout.ABSENT[dtype]
    elif not v.plain(weight, dtype, (C,)):
        return None
    if not v.labels_in_range(target, C):
        return None            # maybe ignored labels, maybe bad ones: the full checks say
    return _Call(logits, target, _layout.ABSENT_MATRIX[dtype], weight, ignore_index,
                 reduction, label_smoothing, logits.shape, logits)


def _cross_entropy_call(logits, target, weight, ignore_index, reduction, label_smoothing):
    call = _plain_call(logits, target, weight, ignore_index, reduction, label_smoothing)
    if call is not None:
        return call
    logits = v.float_array("logits", logits)
    if logits.ndim < 2:
        raise ValueError(f"logits: expected an array of shape (N, C) or (N, C, d1, ..., dk), "
                         f"got shape {logits.shape}")
    v.check_not_empty("logits", logits)
    ignore_index = v.int64("ignore_index", ignore_index)
    target = v.class_target(target, logits, ignore_index)
    dtype = logits.dtype
    C = logits.shape[1]
    weight = v.optional_float_array("weight", weight, dtype, (C,))
    reduction = v.choice("reduction", reduction, REDUCTIONS)
    label_smoothing = v.real("label_smoothing", label_smoothing, 0.0, 1.0)

    is_labels = target.dtype.kind == "i"
    if logits.ndim == 2:
        rows = _layout.rows(logits)
        labels = _layout.rows(target) if is_labels else _layout.absent(np.dtype(np.int64))
        probs = _layout.absent_matrix(dtype) if is_labels else _layout.rows(target)
    else:
        # Class axis last, every other axis folded into the rows (a copy).
        rows = _layout.rows(np.moveaxis(logits, 1, -1).reshape(-1, C))
        if is_labels:
            labels = _layout.rows(target.reshape(-1))
            probs = _layout.absent_matrix(dtype)
        else:
            labels = _layout.absent(np.dtype(np.int64))
            probs = _layout.rows(np.moveaxis(target, 1, -1).reshape(-1, C))
    return _Call(rows, labels, probs, _layout.optional_rows(weight, dtype), ignore_index,
                 reduction, label_smoothing, logits.shape, logits)


def _row_shape(call):
    """The shape of per-row results in the caller's terms: (N, d1, ..., dk)."""
    return call.shape[:1] + call.shape[2:]


def _losses(call):
    """The array that receives per-row losses (``"none"``), else a stand-in."""
    if call.reduction == "none":
        return np.empty(call.logits.shape[0], call.logits.dtype)
    return _layout.absent(call.logits.dtype)


def _loss(call, total, losses):
    if call.reduction == "none":
        return losses.reshape(_row_shape(call))
    return np.array(total, dtype=call.logits.dtype)


def _gradient_rows(call, out):
    """The (rows, C) array the kernel writes the gradient into (may be
    call.logits itself: then in place, over the logits or a private copy)."""
    rows, original = call.logits, call.original
    if rows is not original and not np.may_share_memory(rows, original):
        return rows                     # a copy made for the kernel: overwrite it
    if out is None:
        return np.empty(rows.shape, rows.dtype)
    if out is original:
        return rows                     # in place over the caller's logits
    if len(call.shape) == 2 and out.flags.c_contiguous:
        # A distinct array (validation allowed no partial overlap), or the
        # logits' very elements under another view: then in place too.
        if (out.base is None and original.base is None) or not np.may_share_memory(
                out, original):
            return out
        return rows if v.same_view(out, original) else out
    return np.empty(rows.shape, rows.dtype)


def _deliver_gradient(call, grad, out):
    if len(call.shape) > 2:
        N, C = call.shape[:2]
        grad = np.moveaxis(grad.reshape((N,) + call.shape[2:] + (C,)), -1, 1)
    if out is None:
        return grad
    if grad is not out:
        out[...] = grad
    return out


def softmax_cross_entropy(logits, target, *, weight=None, ignore_index=-100,
                          reduction="mean", label_smoothing=0.0, backend=None):
    """Cross-entropy of ``softmax(logits)`` against ``target``.

    As ``torch.nn.functional.cross_entropy``.  ``logits`` is ``(N, C)`` or,
    for per-position classes (segmentation), ``(N, C, d1, ..., dk)``.
    ``target`` is class indices ``(N,)`` (``(N, d1, ..., dk)``; an integer
    array, entries equal to ``ignore_index`` count for nothing) or
    probabilities of the logits' shape.  ``weight`` is an optional ``(C,)``
    class weight.  ``reduction="mean"`` divides by the summed weight of the
    counted targets (by the number of positions for probability targets),
    ``"sum"`` adds, ``"none"`` returns one loss per position.
    ``label_smoothing`` in [0, 1] mixes the target with the uniform
    distribution.  A class whose target probability is 0 adds nothing to the
    loss, even where its logit is ``-inf`` (masking stays finite).

    Returns the loss: a 0-d array, or ``(N, d1, ..., dk)`` for ``"none"``.
    """
    call = _cross_entropy_call(logits, target, weight, ignore_index, reduction,
                               label_smoothing)
    kernel = _registry.kernel("softmax_cross_entropy", backend)
    losses = _losses(call)
    total = kernel(call.logits, call.labels, call.probs, call.weight, call.ignore_index,
                   call.reduction, call.label_smoothing, losses)
    return _loss(call, total, losses)


def softmax_cross_entropy_backward(logits, target, grad_loss=1.0, *, weight=None,
                                   ignore_index=-100, reduction="mean",
                                   label_smoothing=0.0, backend=None):
    """Gradient of ``softmax_cross_entropy`` with respect to ``logits``.

    ``grad_loss`` is the gradient of the loss: a scalar for ``"mean"`` and
    ``"sum"``, an array of the per-position loss's shape (or a scalar for
    every position) for ``"none"``.  For integer targets and the mean this
    is ``(softmax(logits) - onehot(target)) / N * grad_loss``.
    """
    call = _cross_entropy_call(logits, target, weight, ignore_index, reduction,
                               label_smoothing)
    dtype = call.logits.dtype
    rows = call.logits.shape[0]
    grad_rows = _layout.absent(dtype)
    if reduction == "none":
        if np.ndim(grad_loss) == 0:
            scale = v.real("grad_loss", np.asarray(grad_loss).item())
            grad_rows = np.full(rows, scale, dtype)
        else:
            grad_loss = v.float_array("grad_loss", grad_loss, dtype)
            v.check_shape("grad_loss", grad_loss, _row_shape(call))
            grad_rows = _layout.rows(grad_loss.reshape(-1))
        grad_loss = 1.0
    else:
        if np.ndim(grad_loss) != 0:
            raise ValueError(f"grad_loss: expected a scalar for reduction="
                             f"{reduction!r}, got shape {np.shape(grad_loss)}")
        grad_loss = v.real("grad_loss", np.asarray(grad_loss).item())
    kernel = _registry.kernel("softmax_cross_entropy_backward", backend)
    grad = _gradient_rows(call, None)
    kernel(call.logits, call.labels, call.probs, call.weight, call.ignore_index,
           call.reduction, call.label_smoothing, grad_loss, grad_rows, grad)
    return _deliver_gradient(call, grad, None)


def softmax_cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100,
                                    reduction="mean", label_smoothing=0.0, out=None,
                                    backend=None):
    """Loss and gradient together: ``(loss, dlogits)``, in one pass over the logits.

    The options and the loss are those of ``softmax_cross_entropy``;
    ``dlogits`` is the gradient of ``loss`` (of ``loss.sum()`` for
    ``reduction="none"``).  ``out`` is an optional array of the logits'
    shape and dtype to receive the gradient; it may be ``logits`` itself,
    which is then overwritten, and shares no memory with the other arguments.
    """
    call = _cross_entropy_call(logits, target, weight, ignore_index, reduction,
                               label_smoothing)
    # Plain cases decided cheaply: out is the (plain) logits themselves, or a
    # plain array provably apart from every input; anything else is checked.
    if out is not None and not (call.original is call.logits and (
            out is call.logits or (v.plain(out, call.logits.dtype, call.shape)
                                   and v.apart(out, (call.logits, call.labels, call.probs,
                                                     call.weight))))):
        v.output_array(out, call.shape, call.logits.dtype, allow="logits",
                       logits=call.original, target=target, weight=weight)
    kernel = _registry.kernel("softmax_cross_entropy_with_grad", backend)
    grad = _gradient_rows(call, out)
    losses = _losses(call)
    total = kernel(call.logits, call.labels, call.probs, call.weight, call.ignore_index,
                   call.reduction, call.label_smoothing, grad, losses)
    return _loss(call, total, losses), _deliver_gradient(call, grad, out)
