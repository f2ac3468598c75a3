"""Float64 reference formulas: the judge of every backend in this suite.

Written from the definitions (PyTorch's documented CPU semantics), not from
any fastnn code, in plain float64 NumPy: slow and obvious on purpose.  Each
function takes the same arguments as the public fastnn function of the same
name (minus ``backend``/``out``) and returns the same structure, in float64.
``batchnorm_forward`` updates the running statistics it is given in place,
as the public function does, so a test can compare both final states.

Dimension letters: N batch, C channels or classes, K input and M output
features of a Linear layer.  The gradients here are themselves checked by
central finite differences of the losses here (``test_gradients.py``).
"""

import math

import numpy as np


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _channel_shape(x):
    """Shape that broadcasts a per-channel (C,) vector against x (N, C, *spatial)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _exact_column_sums(values):
    return np.array([math.fsum(column) for column in values.T])


def _per_channel_values(x):
    """Every value of channel c in column c: (values per channel, C)."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


# ---------------------------------------------------------------- batch norm

def batchnorm_forward(x, weight=None, bias=None, running_mean=None, running_var=None,
                      *, training=True, momentum=0.1, eps=1e-5):
    """y = (x - mean) * invstd * weight + bias, per channel (axis 1).

    training: mean and biased variance of the batch; the running statistics
    move toward the batch mean and the *unbiased* batch variance.
    evaluation: mean = running_mean, invstd = 1/sqrt(running_var + eps).
    Returns (y, mean, invstd).
    """
    x = _f64(x)
    if training:
        values = _per_channel_values(x)
        count = values.shape[0]
        # Correctly rounded sums (math.fsum), two passes: the mean is exact to
        # the last bit and the variance suffers neither cancellation nor the
        # n * eps drift of a running sum, for any mean against any spread.
        mean = _exact_column_sums(values) / count
        var = _exact_column_sums((values - mean) ** 2) / count
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            unbiased_var = var * count / (count - 1)
            running_var[...] = (1 - momentum) * running_var + momentum * unbiased_var
    else:
        mean = _f64(running_mean).copy()
        var = _f64(running_var)
    invstd = 1.0 / np.sqrt(var + eps)
    shape = _channel_shape(x)
    y = (x - mean.reshape(shape)) * invstd.reshape(shape)
    if weight is not None:
        y = y * _f64(weight).reshape(shape)
    if bias is not None:
        y = y + _f64(bias).reshape(shape)
    return y, mean, invstd


def batchnorm_backward(dy, x, weight, mean, invstd, *, training=True):
    """Gradients of batchnorm_forward given dy = dLoss/dy.

    With xhat = (x - mean) * invstd and g = dy * weight (the gradient reaching
    xhat), in evaluation the map is affine: dx = g * invstd.  In training mean
    and invstd depend on x too; differentiating through them gives
        dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
    (means per channel over the n values of that channel).
    Returns (dx, dweight, dbias); the last two are None without weight.
    """
    dy, x, mean, invstd = _f64(dy), _f64(x), _f64(mean), _f64(invstd)
    shape = _channel_shape(x)
    reduce_axes = tuple(a for a in range(x.ndim) if a != 1)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    g = dy if weight is None else dy * _f64(weight).reshape(shape)
    if training:
        g_mean = g.mean(axis=reduce_axes, keepdims=True)
        g_xhat_mean = (g * xhat).mean(axis=reduce_axes, keepdims=True)
        dx = invstd.reshape(shape) * (g - g_mean - xhat * g_xhat_mean)
    else:
        dx = g * invstd.reshape(shape)
    if weight is None:
        return dx, None, None
    return dx, (dy * xhat).sum(axis=reduce_axes), dy.sum(axis=reduce_axes)


# ------------------------------------------------------------------- softmax

def softmax(x, axis=-1):
    """exp(x - max) / sum(exp(x - max)) along axis; -inf entries give 0."""
    x = _f64(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """x - max - log(sum(exp(x - max))) along axis; -inf entries stay -inf."""
    x = _f64(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# ------------------------------------------------------------ cross-entropy

def _target_weights(logits, target, weight, ignore_index, label_smoothing):
    """q[i, c], the weight of -log p[i, c] in sample i's loss, and the divisor of "mean".

    loss_i = -sum_c q[i, c] * log softmax(logits)[i, c]   (terms with q = 0 are 0)

    class indices y (torch.nn.functional.cross_entropy): with eps the label
    smoothing, w the class weights (ones by default) and counted samples those
    whose y != ignore_index,
        q[i, c] = (1 - eps) * w[y_i] * [c == y_i] + eps / C * w[c]   (counted)
        q[i, :] = 0                                                  (ignored)
        divisor = sum of w[y_i] over counted samples (nan mean when 0)
    probabilities t: t' = (1 - eps) * t + eps / C,  q = t' * w,  divisor = N.
    """
    n, c = logits.shape
    w = np.ones(c) if weight is None else _f64(weight)
    eps = float(label_smoothing)
    target = np.asarray(target)
    if target.ndim == 2:                                # probabilities
        smoothed = (1 - eps) * _f64(target) + eps / c
        return smoothed * w, float(n)
    labels = target.astype(np.int64)
    counted = labels != ignore_index
    q = np.zeros((n, c))
    rows = np.flatnonzero(counted)
    q[rows] = eps / c * w
    q[rows, labels[rows]] += (1 - eps) * w[labels[rows]]
    return q, float(w[labels[rows]].sum())


def _per_sample_loss(logits, q):
    log_p = log_softmax(logits, axis=1)
    terms = np.zeros_like(q)
    np.multiply(q, log_p, out=terms, where=q != 0)     # 0 * (-inf) counts as 0
    return -terms.sum(axis=1)


def _positions(logits, target):
    """(N, C, d1, ..., dk) logits as (positions, C) rows, each position an
    independent sample (torch's K-dimensional cross-entropy); the target in
    the same order."""
    logits, target = _f64(logits), np.asarray(target)
    if logits.ndim == 2:
        return logits, target
    c = logits.shape[1]
    rows = np.moveaxis(logits, 1, -1).reshape(-1, c)
    if target.ndim == logits.ndim:                      # probabilities
        return rows, np.moveaxis(target, 1, -1).reshape(-1, c)
    return rows, target.reshape(-1)


def _position_shape(logits):
    shape = np.shape(logits)
    return shape[:1] + shape[2:]


def _as_logits(grad, logits):
    """(positions, C) rows back to the logits' (N, C, d1, ..., dk) layout."""
    shape = np.shape(logits)
    if len(shape) == 2:
        return grad
    return np.moveaxis(grad.reshape(shape[:1] + shape[2:] + shape[1:2]), -1, 1)


def softmax_cross_entropy(logits, target, *, weight=None, ignore_index=-100,
                          reduction="mean", label_smoothing=0.0):
    shape = _position_shape(logits)
    logits, target = _positions(logits, target)
    q, divisor = _target_weights(logits, target, weight, ignore_index, label_smoothing)
    per_sample = _per_sample_loss(logits, q)
    if reduction == "none":
        return per_sample.reshape(shape)
    if reduction == "sum":
        return np.asarray(per_sample.sum())
    return np.asarray(per_sample.sum() / divisor if divisor != 0 else np.nan)


def softmax_cross_entropy_backward(logits, target, grad_loss=1.0, *, weight=None,
                                   ignore_index=-100, reduction="mean",
                                   label_smoothing=0.0):
    """dloss_i/dlogits[i, c] = p[i, c] * sum_k q[i, k] - q[i, c], then scaled.

    "mean" divides by the divisor, "none" scales row i by grad_loss[i],
    "mean"/"sum" scale everything by the scalar grad_loss.  When nothing is
    counted (divisor 0) every row has q = 0 and the gradient is 0, as
    PyTorch's, although the "mean" loss is nan.
    """
    original = logits
    logits, target = _positions(logits, target)
    q, divisor = _target_weights(logits, target, weight, ignore_index, label_smoothing)
    p = softmax(logits, axis=1)
    grad = p * q.sum(axis=1, keepdims=True) - q
    if reduction == "none":
        scale = np.broadcast_to(_f64(grad_loss), _position_shape(original)).reshape(-1)
        return _as_logits(grad * scale[:, None], original)
    if reduction == "mean":
        grad = grad / divisor if divisor != 0 else grad
    return _as_logits(grad * float(grad_loss), original)


def softmax_cross_entropy_with_grad(logits, target, *, weight=None, ignore_index=-100,
                                    reduction="mean", label_smoothing=0.0):
    """(loss, gradient of loss.sum()) — for "none" that is grad_loss = ones(N)."""
    options = dict(weight=weight, ignore_index=ignore_index, reduction=reduction,
                   label_smoothing=label_smoothing)
    loss = softmax_cross_entropy(logits, target, **options)
    grad_loss = np.ones(_position_shape(logits)) if reduction == "none" else 1.0
    return loss, softmax_cross_entropy_backward(logits, target, grad_loss, **options)


# -------------------------------------------------------------------- linear

def linear_forward(x, weight, bias=None, *, activation=None):
    """y = activation(x @ weight.T + bias); x (*, K), weight (M, K), bias (M,)."""
    z = _f64(x) @ _f64(weight).T
    if bias is not None:
        z = z + _f64(bias)
    return np.maximum(z, 0.0) if activation == "relu" else z


def linear_backward(dy, x, weight, *, y=None, activation=None, has_bias=True, need_dx=True):
    """With dz = dy masked by y > 0 (ReLU; the gradient at 0 is 0, as PyTorch):
    dx = dz @ weight, dweight = dz.T @ x, dbias = dz summed over the batch."""
    dz = _f64(dy)
    if activation == "relu":
        dz = np.where(_f64(y) > 0, dz, 0.0)
    dx = dz @ _f64(weight) if need_dx else None
    # Leading axes (*, K) are all batch: every position adds to dweight and dbias.
    dz_rows, x_rows = dz.reshape(-1, dz.shape[-1]), _f64(x).reshape(-1, np.shape(x)[-1])
    dbias = dz_rows.sum(axis=0) if has_bias else None
    return dx, dz_rows.T @ x_rows, dbias


# ---------------------------------------------------------------- optimizers

def sgd_step(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0,
             nesterov=False, weight_decay=0.0, first_step=False):
    """torch.optim.SGD's documented update, in place on param (and the buffer):
    g = grad + weight_decay * param; b = g on the first step, else
    b = momentum * b + (1 - dampening) * g; the step is g + momentum * b
    (Nesterov) or b, and param -= lr * step.  With momentum 0 the step is g."""
    p = _f64(param)
    g = _f64(grad) + weight_decay * p
    if momentum != 0:
        b = g.copy() if first_step else momentum * _f64(momentum_buffer) + (1 - dampening) * g
        momentum_buffer[...] = b
        g = g + momentum * b if nesterov else b
    param[...] = p - lr * g


def adam_step(param, grad, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, decoupled=False):
    """torch.optim.Adam's documented update (AdamW's with decoupled=True), in place:
    AdamW first shrinks param by (1 - lr * weight_decay), Adam adds
    weight_decay * param to the gradient; m = beta1 m + (1 - beta1) g,
    v = beta2 v + (1 - beta2) g^2, m^ = m / (1 - beta1^t), v^ = v / (1 - beta2^t),
    param -= lr * m^ / (sqrt(v^) + eps) -- with PyTorch's placement of eps,
    i.e. lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""
    p = _f64(param)
    g = _f64(grad)
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = beta1 * _f64(exp_avg) + (1 - beta1) * g
    v = beta2 * _f64(exp_avg_sq) + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** step)
    denom = np.sqrt(v) / np.sqrt(1 - beta2 ** step) + eps
    exp_avg[...] = m
    exp_avg_sq[...] = v
    param[...] = p - lr * m_hat / denom
