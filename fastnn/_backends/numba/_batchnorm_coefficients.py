"""Batch normalization, numba: between the passes.

Partial-sum buffers, combining their slots in a fixed order, the per-channel
statistics (running statistics updated) and the coefficients the second
pass applies, for ``batchnorm.py``'s drivers.  An absent optional array is
a zero-length one (the backend contract's stand-in).
"""

import numpy as np

from ._jit import jit

@jit()
def _merge_sums(s_a, s_b, C, group):
    """Per-channel totals of two partial-sum buffers (nslots, C * group).

    Slots are added in slot order, then the ``group`` columns of a channel
    (S for "rows" with S > 1, else 1) in column order: a fixed order.
    """
    nslots, width = s_a.shape
    ta = s_a[0].copy()
    tb = s_b[0].copy()
    for slot in range(1, nslots):
        for j in range(width):
            ta[j] += s_a[slot, j]
            tb[j] += s_b[slot, j]
    if group == 1:
        return ta, tb
    ca = np.zeros(C)
    cb = np.zeros(C)
    for c in range(C):
        for j in range(c * group, c * group + group):
            ca[c] += ta[j]
            cb[c] += tb[j]
    return ca, cb


@jit()
def per_column(v, planes, S):
    """Per-channel values as the tiles read them: as is for "planes" and
    S == 1, else repeated S times (one entry per column of x2)."""
    if planes or S == 1:
        return v
    out = np.empty(v.size * S, v.dtype)
    for c in range(v.size):
        out[c * S:(c + 1) * S] = v[c]
    return out


@jit()
def partial_buffers(plan, C, S):
    """Two float64 buffers with one row of partial sums per slot."""
    width = C if plan[0] else C * S
    return np.empty((plan[5], width)), np.empty((plan[5], width))


@jit()
def channel_shifts(x2, C, S):
    """shift[c] = x[0, c, 0]: one value of each channel, subtracted before summing.

    Sums of x - shift lose no accuracy to a large mean: the variance
    sum((x - shift)^2)/n - (mean - shift)^2 cancels only by
    (mean - shift)^2 / var, and shift being one of the channel's own n values bounds that ratio by n (it is
    a few units for any ordinary data), so float64 sums stay accurate.
    """
    shift = np.empty(C, x2.dtype)
    for c in range(C):
        shift[c] = x2[0, c * S]
    return shift


@jit()
def channel_statistics(c, sum1, sum2, n, shift, running_mean, running_var,
                        momentum, eps, invstd_out):
    """Channel c's batch mean (float64, returned) and invstd (into invstd_out)
    from its shifted sums; its running statistics updated (unbiased variance)."""
    d = sum1 / n
    m2 = max(sum2 - sum1 * d, 0.0)
    mean = shift + d
    invstd_out[c] = 1.0 / np.sqrt(m2 / n + eps)
    if running_mean.size:
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean
    if running_var.size:
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * (m2 / (n - 1))
    return mean


@jit()
def batch_statistics(plan, N, C, S, shift, s1, s2, running_mean, running_var,
                      momentum, eps, invstd_out):
    """Batch mean (float64, returned) and invstd (into invstd_out) from the
    moments pass; the running statistics updated in place."""
    sum1, sum2 = _merge_sums(s1, s2, C, 1 if plan[0] else S)
    mean = np.empty(C)
    for c in range(C):
        mean[c] = channel_statistics(c, sum1[c], sum2[c], N * S, shift[c], running_mean,
                                      running_var, momentum, eps, invstd_out)
    return mean


@jit()
def running_statistics(running_mean, running_var, eps, invstd_out):
    """Evaluation: the running mean (float64) and its invstd into invstd_out."""
    mean = np.empty(running_mean.size)
    for c in range(running_mean.size):
        mean[c] = running_mean[c]
        invstd_out[c] = 1.0 / np.sqrt(np.float64(running_var[c]) + eps)
    return mean


@jit()
def channel_affine(c, mean, invstd, weight, bias, mean_out):
    """Channel c's (center, scale, offset) in x's dtype for
    y = (x - center) * scale + offset, center also written to mean_out[c].

    center is the mean rounded to x's dtype; offset = bias + (center - mean)
    * scale restores that rounding.
    """
    mean_out[c] = mean
    sc = np.float64(invstd)
    if weight.size:
        sc *= weight[c]
    off = (np.float64(mean_out[c]) - mean) * sc
    if bias.size:
        off += bias[c]
    to_dtype = mean_out.dtype.type
    return mean_out[c], to_dtype(sc), to_dtype(off)


@jit()
def affine_coefficients(plan, S, mean, invstd, weight, bias, mean_out):
    """(center, scale, offset) of every channel (channel_affine), per column."""
    C = mean.size
    scale = np.empty(C, mean_out.dtype)
    offset = np.empty(C, mean_out.dtype)
    for c in range(C):
        _, scale[c], offset[c] = channel_affine(c, mean[c], invstd[c], weight, bias,
                                                 mean_out)
    planes = plan[0]
    return (per_column(mean_out, planes, S), per_column(scale, planes, S),
            per_column(offset, planes, S))


@jit()
def grad_scale(plan, S, weight, invstd):
    """k1 = weight * invstd in x's dtype, per column (evaluation backward)."""
    k1 = np.empty(invstd.size, invstd.dtype)
    for c in range(invstd.size):
        k1[c] = np.float64(invstd[c]) * weight[c] if weight.size else invstd[c]
    return per_column(k1, plan[0], S)


@jit()
def _channel_weight_grads(c, sum_dy, sum_dyx, invstd, dweight_out, dbias_out):
    """dbias[c] = sum(dy), dweight[c] = invstd * sum(dy * (x - mean)), when
    the call has a weight (else the outputs are empty)."""
    if dweight_out.size:
        dweight_out[c] = np.float64(invstd[c]) * sum_dyx
        dbias_out[c] = sum_dy


@jit()
def channel_grad_coefficients(c, n, sum_dy, sum_dyx, weight, invstd, dweight_out,
                               dbias_out):
    """Channel c's (dy_center, k1, k2, comp) in x's dtype for
    dx = (dy - dy_center) * k1 + (x - mean) * k2 + comp; dweight, dbias written.

    dweight and dbias as in _channel_weight_grads; k1 = weight * invstd and
    k2 = -k1 * invstd^2 * sum(dy * (x - mean)) / n; dy_center is mean(dy)
    rounded to x's dtype (dy - dy_center is then exact for dy near its mean)
    and comp = k1 * (dy_center - mean(dy)) restores the rounding.
    """
    _channel_weight_grads(c, sum_dy, sum_dyx, invstd, dweight_out, dbias_out)
    istd = np.float64(invstd[c])
    a = istd * weight[c] if weight.size else istd
    mdy = sum_dy / n
    to_dtype = invstd.dtype.type
    dy_center = to_dtype(mdy)
    return (dy_center, to_dtype(a), to_dtype(-a * istd * istd * (sum_dyx / n)),
            to_dtype(a * (np.float64(dy_center) - mdy)))


@jit()
def weight_grads(plan, C, S, s_dy, s_dyx, invstd, dweight_out, dbias_out):
    """dweight and dbias of every channel from the partial sums."""
    sum_dy, sum_dyx = _merge_sums(s_dy, s_dyx, C, 1 if plan[0] else S)
    for c in range(C):
        _channel_weight_grads(c, sum_dy[c], sum_dyx[c], invstd, dweight_out, dbias_out)


@jit()
def grad_input_coefficients(plan, N, C, S, s_dy, s_dyx, weight, mean, invstd,
                             dweight_out, dbias_out):
    """(dy_center, k1, x_center, k2, comp) of every channel
    (channel_grad_coefficients, x_center = mean), per column."""
    sum_dy, sum_dyx = _merge_sums(s_dy, s_dyx, C, 1 if plan[0] else S)
    dy_center = np.empty(C, invstd.dtype)
    k1 = np.empty(C, invstd.dtype)
    k2 = np.empty(C, invstd.dtype)
    comp = np.empty(C, invstd.dtype)
    for c in range(C):
        dy_center[c], k1[c], k2[c], comp[c] = channel_grad_coefficients(
            c, N * S, sum_dy[c], sum_dyx[c], weight, invstd, dweight_out, dbias_out)
    planes = plan[0]
    return (per_column(dy_center, planes, S), per_column(k1, planes, S),
            per_column(mean, planes, S), per_column(k2, planes, S),
            per_column(comp, planes, S))
