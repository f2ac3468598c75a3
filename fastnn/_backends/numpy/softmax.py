"""Softmax, log-softmax and the softmax-cross-entropy loss, the readable reference.

Shapes: logits are (N, C), N samples of C classes.  A target is either
class indices y of shape (N,) or probabilities t of shape (N, C).

Stable log-softmax: with m = max_c x_c (the row maximum),
    logp_c = x_c - m - log(sum_k exp(x_k - m))
Every exponent is <= 0, so nothing overflows; -inf logits give exp(-inf) = 0.

Cross-entropy with class weights w (all ones when absent) and label
smoothing eps, exactly as torch.nn.functional.cross_entropy:
  index targets y_n (rows with y_n == ignore_index count for nothing):
    loss_n = (1 - eps) * (-w[y_n] * logp[n, y_n]) + eps / C * (-sum_c w_c logp[n, c])
    "mean" divides the sum of loss_n by sum_n w[y_n] over the counted rows.
  probability targets t (ignore_index does not apply):
    t'      = (1 - eps) * t + eps / C
    loss_n  = -sum_c w_c t'[n, c] logp[n, c]
    "mean" divides by N.
  A class whose target weight is 0 contributes 0 even where logp is -inf
  (the limit of t log p as t -> 0), so masked classes stay finite.

The gradient with respect to the logits is "softmax minus target": writing
a[n, c] for the coefficient of logp[n, c] in loss_n (loss_n = -sum_c a[n, c]
logp[n, c]), and since d logp_c / d x_j = delta_cj - p_j,
    dloss_n / dx[n, j] = p[n, j] * sum_c a[n, c] - a[n, j]
which for one-hot targets without weights or smoothing is p - onehot(y).
The gradient of the reduced loss is that times grad_loss (per row for
"none") divided by the "mean" denominator.
"""

import numpy as np


def log_softmax(x, axis):
    with np.errstate(invalid="ignore"):     # a row of all -inf is nan, quietly
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis):
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


def _target_coefficients(logits, target, weight, ignore_index, label_smoothing):
    """a[n, c] with loss_n = -sum_c a[n, c] * logp[n, c], and the "mean" divisor."""
    N, C = logits.shape
    w = np.ones(C, logits.dtype) if weight is None else weight
    if target.ndim == 2:                    # probabilities
        smoothed = (1 - label_smoothing) * target + label_smoothing / C
        return smoothed * w, N
    counted = target != ignore_index
    y = np.where(counted, target, 0)
    coef = np.zeros((N, C), logits.dtype)
    if label_smoothing:
        coef[:] = (label_smoothing / C) * w
    coef[np.arange(N), y] += (1 - label_smoothing) * w[y]
    coef *= counted[:, None]
    return coef, w[y][counted].sum(dtype=np.float64)


def _losses(logp, coef):
    # where coef is 0 the term is 0, even when logp is -inf (0 * -inf is nan)
    with np.errstate(invalid="ignore"):
        terms = np.where(coef != 0, coef * logp, 0)
    return -terms.sum(axis=1)


def _reduce(losses, reduction, denominator):
    if reduction == "none":
        return losses
    total = losses.sum(dtype=np.float64)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as PyTorch
            total = np.float64(total) / denominator
    return np.asarray(total, dtype=losses.dtype)


def _scale(grad_loss, reduction, denominator, dtype):
    """Per-row factor that turns dloss_n/dx into d(reduced loss)/dx."""
    if reduction == "none":
        return np.asarray(grad_loss, dtype)[:, None]
    if reduction == "mean":
        # No counted weight at all: the loss is nan (0/0) but nothing flows
        # back, as in PyTorch, so the gradient is 0 rather than nan.
        return dtype.type(np.float64(grad_loss) / denominator if denominator else 0.0)
    return dtype.type(grad_loss)


def _forward_and_grad(logits, target, grad_loss, weight, ignore_index,
                      reduction, label_smoothing, want_grad):
    logp = log_softmax(logits, 1)
    coef, denominator = _target_coefficients(logits, target, weight,
                                             ignore_index, label_smoothing)
    loss = _reduce(_losses(logp, coef), reduction, denominator)
    if not want_grad:
        return loss, None
    p = np.exp(logp)
    grad = p * coef.sum(axis=1, keepdims=True) - coef
    grad *= _scale(grad_loss, reduction, denominator, logits.dtype)
    return loss, grad


def softmax_cross_entropy(logits, target, weight, ignore_index, reduction,
                          label_smoothing):
    loss, _ = _forward_and_grad(logits, target, None, weight, ignore_index,
                                reduction, label_smoothing, want_grad=False)
    return loss


def softmax_cross_entropy_backward(logits, target, grad_loss, weight,
                                   ignore_index, reduction, label_smoothing):
    _, grad = _forward_and_grad(logits, target, grad_loss, weight, ignore_index,
                                reduction, label_smoothing, want_grad=True)
    return grad


def softmax_cross_entropy_with_grad(logits, target, weight, ignore_index,
                                    reduction, label_smoothing, out):
    grad_loss = np.ones(logits.shape[0]) if reduction == "none" else 1.0
    loss, grad = _forward_and_grad(logits, target, grad_loss, weight, ignore_index,
                                   reduction, label_smoothing, want_grad=True)
    if out is None:
        return loss, grad
    out[...] = grad
    return loss, out
