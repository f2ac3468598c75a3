"""Softmax, log-softmax and the softmax-cross-entropy loss, the readable reference.

Shapes: logits are (N, C), N samples of C classes (softmax: rows of any
length, along the last axis).  A target is either class indices y of shape
(N,) or probabilities t of shape (N, C); the other is a zero-length stand-in.

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


def _log_softmax_rows(x):
    with np.errstate(invalid="ignore"):     # a row of all -inf is nan, quietly
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_softmax(x, y):
    y[...] = _log_softmax_rows(x)


def softmax(x, y):
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y[...] = e / e.sum(axis=1, keepdims=True)


def _target_coefficients(logits, labels, probs, weight, ignore_index, label_smoothing):
    """a[n, c] with loss_n = -sum_c a[n, c] * logp[n, c], and the "mean" divisor."""
    N, C = logits.shape
    w = weight if weight.size else np.ones(C, logits.dtype)
    if not labels.size:                     # probabilities
        smoothed = (1 - label_smoothing) * probs + label_smoothing / C
        return smoothed * w, N
    counted = labels != ignore_index
    y = np.where(counted, labels, 0)
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


def _reduce(losses, reduction, denominator, out):
    """The reduced loss as a float; for "none" the losses go into ``out``."""
    if reduction == "none":
        out[...] = losses
        return 0.0
    total = losses.sum(dtype=np.float64)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):  # all ignored: nan, as PyTorch
            total = np.float64(total) / denominator
    return float(total)


def _scale(grad_loss, grad_rows, reduction, denominator, dtype):
    """Per-row factor that turns dloss_n/dx into d(reduced loss)/dx."""
    if reduction == "none":
        return grad_rows[:, None] if grad_rows.size else dtype.type(grad_loss)
    if reduction == "mean":
        # No counted weight at all: the loss is nan (0/0) but nothing flows
        # back, as in PyTorch, so the gradient is 0 rather than nan.
        return dtype.type(np.float64(grad_loss) / denominator if denominator else 0.0)
    return dtype.type(grad_loss)


def _gradient(logits, logp, coef, scale):
    p = np.exp(logp)
    return (p * coef.sum(axis=1, keepdims=True) - coef) * scale


def softmax_cross_entropy(logits, labels, probs, weight, ignore_index, reduction,
                          label_smoothing, losses):
    coef, denominator = _target_coefficients(logits, labels, probs, weight, ignore_index,
                                             label_smoothing)
    return _reduce(_losses(_log_softmax_rows(logits), coef), reduction, denominator, losses)


def softmax_cross_entropy_backward(logits, labels, probs, weight, ignore_index, reduction,
                                   label_smoothing, grad_loss, grad_rows, dlogits):
    coef, denominator = _target_coefficients(logits, labels, probs, weight, ignore_index,
                                             label_smoothing)
    scale = _scale(grad_loss, grad_rows, reduction, denominator, logits.dtype)
    dlogits[...] = _gradient(logits, _log_softmax_rows(logits), coef, scale)


def softmax_cross_entropy_with_grad(logits, labels, probs, weight, ignore_index, reduction,
                                    label_smoothing, dlogits, losses):
    coef, denominator = _target_coefficients(logits, labels, probs, weight, ignore_index,
                                             label_smoothing)
    logp = _log_softmax_rows(logits)
    total = _reduce(_losses(logp, coef), reduction, denominator, losses)
    scale = _scale(1.0, np.zeros(0), reduction, denominator, logits.dtype)
    dlogits[...] = _gradient(logits, logp, coef, scale)     # may overwrite the logits
    return total
