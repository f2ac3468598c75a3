"""Batch normalization, the Numba kernels: two passes forward, two backward.

Shapes: x, y, dy, dx are (N, C, *spatial); S = prod(spatial) (1 for (N, C));
statistics are per channel over n = N * S values.  Every kernel works on the
C-contiguous 2-D view x2 = x.reshape(N, L), L = C * S, where column j belongs
to channel j // S.  The formulas are those of the NumPy reference
(``fastnn/backends/numpy/batchnorm.py``); this file explains the tricks.

Forward, training (x read twice, y written once):
  1. moments pass: per work tile, shifted sums sum(x - K), sum((x - K)^2) in
     float64, K a value of the tile (so the sums never cancel the way
     E[x^2] - E[x]^2 does); tiles are merged per channel with Chan's formula
     in tile order.  The running statistics are updated right after the merge.
  2. affine pass: y = (x - m) * scale + offset, one subtraction and one
     multiply-add per value.  m is the mean rounded to x's dtype, so x - m is
     exact for data near the mean; the rounding of m is compensated in
     offset = bias + (m - mean) * scale (all folded per channel in float64).
  Saves mean (= m) and invstd = 1/sqrt(var + eps), in x's dtype.
Forward, evaluation: the affine pass alone, with the running statistics.
Backward, training (dy and x read twice, dx written once):
  1. sums pass: sum(dy) and sum(dy * (x - mean)) together, float64; x-hat is
     recomputed, never stored.  dbias = sum(dy), dweight = invstd * sum(dy*(x-mean)).
  2. dx = (dy - mdy) * k1 + (x - mean) * k2 + t, with k1 = weight * invstd,
     k2 = -k1 * invstd^2 * sum(dy*(x-mean)) / n, mdy = sum(dy)/n rounded to
     x's dtype and t the compensation of that rounding.
Backward, evaluation: one pass, dx = dy * k1, fused with the sums when
dweight and dbias are wanted.

Two layouts of work tiles (a tile is a block of rows times a block of columns):
- "rows" (S < _PLANE_MIN_S, e.g. (N, C)): a tile spans many channels; the
  inner loop runs along columns (vectorized across channels) and keeps one
  float64 partial per column, stored per row block; each column has its own
  shift (the tile's first row).
- "planes" (S >= _PLANE_MIN_S, e.g. (N, C, H, W)): a tile lies inside one
  channel (rows n0:n1 of a chunk of that channel's plane); the inner loop runs
  along the plane with one accumulator per position, folded pairwise into
  one partial per tile at the end.
Tiles have a size fixed by the shape alone and write their partial sums into
their own slot; slots are combined afterwards in slot order.  The serial and
parallel drivers run the very same tiles (range vs prange), so results are
bitwise identical for every thread count.  Below ``use_parallel``'s size the
serial driver avoids waking threads.

Test: tests/ (conformance suite) and /tmp/bnhelper/check.py; bench:
``python -m fastnn bench --kernels batchnorm``.
"""

import numpy as np
from numba import prange

from ._jit import jit, use_parallel

# Tiles aim at about this many values (256 KiB of float32: a tile and its
# float64 partials stay in L2).
_TILE_ELEMENTS = 1 << 16
# A "rows" tile has at least this many rows, so that the per-column partials
# (24 bytes per column and row block) stay small against the data.
_MIN_TILE_ROWS = 64
# Columns of one tile at most: its float64 accumulators (2 x 8 KiB) stay in L1.
_MAX_TILE_COLUMNS = 1024
# Spatial size from which the "planes" layout is used.
_PLANE_MIN_S = 32


@jit()
def _cdiv(a, b):
    return (a + b - 1) // b


# ----------------------------------------------------------------------------
# Tiling.  A plan is (planes, R, nrb, W, ncb, nslots, ntiles):
#   rows:   tile t = (row block t // ncb, column chunk t % ncb), slot = row block
#   planes: tile t = (slot t // C, channel t % C), slot = (row block, chunk of S)

@jit()
def _plan(N, C, S):
    L = C * S
    if S >= _PLANE_MIN_S:
        ncb = _cdiv(S, _MAX_TILE_COLUMNS)
        W = _cdiv(S, ncb)
        R = min(N, max(1, _cdiv(_TILE_ELEMENTS, W)))
        nrb = _cdiv(N, R)
        nslots = nrb * ncb
        return True, R, nrb, W, ncb, nslots, nslots * C
    ncb = _cdiv(L, _MAX_TILE_COLUMNS)
    W = _cdiv(L, ncb)
    R = min(N, max(_MIN_TILE_ROWS, _cdiv(_TILE_ELEMENTS, L)))
    nrb = _cdiv(N, R)
    return False, R, nrb, W, ncb, nrb, nrb * ncb


@jit()
def _tile(plan, t, N, C, S):
    """(slot, channel, n0, n1, j0, j1) of tile t; channel is -1 for "rows"."""
    planes, R, nrb, W, ncb, nslots, ntiles = plan
    if planes:
        slot = t // C
        c = t - slot * C
        rb = slot // ncb
        cb = slot - rb * ncb
        n0 = rb * R
        j0 = cb * W
        return slot, c, n0, min(N, n0 + R), c * S + j0, c * S + min(S, j0 + W)
    rb = t // ncb
    cb = t - rb * ncb
    n0 = rb * R
    j0 = cb * W
    return rb, -1, n0, min(N, n0 + R), j0, min(C * S, j0 + W)


@jit()
def _slot_counts(plan, N, S):
    """Values per column (rows) or per channel (planes) that each slot holds."""
    planes, R, nrb, W, ncb, nslots, ntiles = plan
    counts = np.empty(nslots, np.float64)
    for slot in range(nslots):
        rb = slot // ncb if planes else slot
        rows = min(N, rb * R + R) - rb * R
        if planes:
            cb = slot - rb * ncb
            counts[slot] = rows * (min(S, cb * W + W) - cb * W)
        else:
            counts[slot] = rows
    return counts


# ----------------------------------------------------------------------------
# Tile kernels.  Each works on rows n0:n1 and columns j0:j1 of 2-D arrays;
# per-column vectors (shift, accumulators, coefficients) have length j1 - j0.

@jit()
def _fold_sum(a, w):
    """Sum of a[:w], added pairwise in a fixed order (vectorizes); a is overwritten."""
    while w > 1:
        h = (w + 1) // 2
        for i in range(w - h):
            a[i] += a[i + h]
        w = h
    return a[0]


@jit()
def _moments_tile(x2, n0, n1, j0, j1, shift, acc1, acc2):
    """acc1 = sum(x - shift), acc2 = sum((x - shift)^2) over rows n0:n1, float64."""
    W = j1 - j0
    for i in range(W):
        acc1[i] = 0.0
        acc2[i] = 0.0
    n = n0
    # Two rows per sweep: half the accumulator loads and stores.
    while n + 2 <= n1:
        xa = x2[n, j0:j1]
        xb = x2[n + 1, j0:j1]
        for i in range(W):
            da = np.float64(xa[i]) - shift[i]
            db = np.float64(xb[i]) - shift[i]
            acc1[i] += da + db
            acc2[i] += da * da + db * db
        n += 2
    if n < n1:
        xa = x2[n, j0:j1]
        for i in range(W):
            da = np.float64(xa[i]) - shift[i]
            acc1[i] += da
            acc2[i] += da * da


@jit()
def _grad_sums_tile(dy2, x2, n0, n1, j0, j1, center, acc_dy, acc_dyx):
    """acc_dy = sum(dy), acc_dyx = sum(dy * (x - center)) over rows n0:n1, float64."""
    W = j1 - j0
    for i in range(W):
        acc_dy[i] = 0.0
        acc_dyx[i] = 0.0
    n = n0
    while n + 2 <= n1:
        ga = dy2[n, j0:j1]
        gb = dy2[n + 1, j0:j1]
        xa = x2[n, j0:j1]
        xb = x2[n + 1, j0:j1]
        for i in range(W):
            a = np.float64(ga[i])
            b = np.float64(gb[i])
            acc_dy[i] += a + b
            acc_dyx[i] += (a * (np.float64(xa[i]) - center[i])
                           + b * (np.float64(xb[i]) - center[i]))
        n += 2
    if n < n1:
        ga = dy2[n, j0:j1]
        xa = x2[n, j0:j1]
        for i in range(W):
            a = np.float64(ga[i])
            acc_dy[i] += a
            acc_dyx[i] += a * (np.float64(xa[i]) - center[i])


@jit()
def _affine_tile(x2, y2, n0, n1, j0, j1, center, scale, offset):
    """y = (x - center) * scale + offset with per-column coefficients."""
    for n in range(n0, n1):
        xr = x2[n, j0:j1]
        yr = y2[n, j0:j1]
        for i in range(j1 - j0):
            yr[i] = (xr[i] - center[i]) * scale[i] + offset[i]


@jit()
def _affine_plane_tile(x2, y2, n0, n1, j0, j1, center, scale, offset):
    """y = (x - center) * scale + offset with one channel's coefficients."""
    for n in range(n0, n1):
        xr = x2[n, j0:j1]
        yr = y2[n, j0:j1]
        for i in range(j1 - j0):
            yr[i] = (xr[i] - center) * scale + offset


@jit()
def _grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center, k1, x_center, k2, t):
    """dx = (dy - dy_center) * k1 + (x - x_center) * k2 + t, per-column coefficients."""
    for n in range(n0, n1):
        gr = dy2[n, j0:j1]
        xr = x2[n, j0:j1]
        dr = dx2[n, j0:j1]
        for i in range(j1 - j0):
            dr[i] = (gr[i] - dy_center[i]) * k1[i] + (xr[i] - x_center[i]) * k2[i] + t[i]


@jit()
def _grad_input_plane_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center, k1, x_center, k2, t):
    """dx = (dy - dy_center) * k1 + (x - x_center) * k2 + t, one channel's coefficients."""
    for n in range(n0, n1):
        gr = dy2[n, j0:j1]
        xr = x2[n, j0:j1]
        dr = dx2[n, j0:j1]
        for i in range(j1 - j0):
            dr[i] = (gr[i] - dy_center) * k1 + (xr[i] - x_center) * k2 + t


@jit()
def _scaled_grad_tile(dy2, dx2, n0, n1, j0, j1, k1):
    """dx = dy * k1 (evaluation backward), per-column k1."""
    for n in range(n0, n1):
        gr = dy2[n, j0:j1]
        dr = dx2[n, j0:j1]
        for i in range(j1 - j0):
            dr[i] = gr[i] * k1[i]


# ----------------------------------------------------------------------------
# One tile of each pass, for either layout: what the drivers' loops run.

@jit()
def _moments_pass_tile(plan, t, x2, C, S, shifts, p1, p2):
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        shift = shifts[slot, j0:j1]
        shift[:] = x2[n0, j0:j1]
        _moments_tile(x2, n0, n1, j0, j1, shift, p1[slot, j0:j1], p2[slot, j0:j1])
    else:
        W = j1 - j0
        shift = np.full(W, np.float64(x2[n0, j0]))
        acc1 = np.empty(W)
        acc2 = np.empty(W)
        _moments_tile(x2, n0, n1, j0, j1, shift, acc1, acc2)
        shifts[slot, c] = shift[0]
        p1[slot, c] = _fold_sum(acc1, W)
        p2[slot, c] = _fold_sum(acc2, W)


@jit()
def _grad_sums_pass_tile(plan, t, dy2, x2, C, S, center_cols, center, s_dy, s_dyx):
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        _grad_sums_tile(dy2, x2, n0, n1, j0, j1, center_cols[j0:j1],
                        s_dy[slot, j0:j1], s_dyx[slot, j0:j1])
    else:
        W = j1 - j0
        centers = np.full(W, center[c])
        acc_dy = np.empty(W)
        acc_dyx = np.empty(W)
        _grad_sums_tile(dy2, x2, n0, n1, j0, j1, centers, acc_dy, acc_dyx)
        s_dy[slot, c] = _fold_sum(acc_dy, W)
        s_dyx[slot, c] = _fold_sum(acc_dyx, W)


@jit()
def _affine_pass_tile(plan, t, x2, y2, C, S, center, scale, offset):
    """Coefficients are per column ("rows") or per channel ("planes")."""
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        _affine_tile(x2, y2, n0, n1, j0, j1, center[j0:j1], scale[j0:j1], offset[j0:j1])
    else:
        _affine_plane_tile(x2, y2, n0, n1, j0, j1, center[c], scale[c], offset[c])


@jit()
def _grad_input_pass_tile(plan, t, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2, tc):
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        _grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center[j0:j1], k1[j0:j1],
                         x_center[j0:j1], k2[j0:j1], tc[j0:j1])
    else:
        _grad_input_plane_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center[c], k1[c],
                               x_center[c], k2[c], tc[c])


@jit()
def _eval_grad_pass_tile(plan, t, dy2, x2, dx2, C, S, k1, need_sums,
                         center_cols, center, s_dy, s_dyx):
    """Evaluation backward: dx = dy * k1, and the sums when need_sums."""
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        _scaled_grad_tile(dy2, dx2, n0, n1, j0, j1, k1[j0:j1])
    else:
        _scaled_grad_tile(dy2, dx2, n0, n1, j0, j1, np.full(j1 - j0, k1[c]))
    # The tile was just read: the sums find it in cache.
    if need_sums:
        _grad_sums_pass_tile(plan, t, dy2, x2, C, S, center_cols, center, s_dy, s_dyx)


# ----------------------------------------------------------------------------
# Between the passes: merging the slots, per-channel coefficients.

@jit()
def _merge_moments(shifts, p1, p2, counts, C, group):
    """Per-channel mean and sum of squared deviations (m2) from the slots.

    Column k of the partials (a column of x2 for "rows", a channel for
    "planes") is merged across slots with Chan's update; then the ``group``
    columns of each channel (S for "rows" with S > 1, else 1) are combined.
    Means are carried relative to the first slot's shift and added to it at
    the end, so a large mean is rounded once, not at every merge.
    """
    nslots, width = p1.shape
    mean = np.empty(width)      # relative to base
    m2 = np.empty(width)
    base = shifts[0].copy()
    na = counts[0]
    for k in range(width):
        mean[k] = p1[0, k] / na
        m2[k] = p2[0, k] - p1[0, k] * p1[0, k] / na
    for slot in range(1, nslots):
        nb = counts[slot]
        n = na + nb
        wb = nb / n
        wab = na * nb / n
        for k in range(width):
            mb = (shifts[slot, k] - base[k]) + p1[slot, k] / nb
            m2b = p2[slot, k] - p1[slot, k] * p1[slot, k] / nb
            delta = mb - mean[k]
            mean[k] += delta * wb
            m2[k] += m2b + delta * delta * wab
        na = n
    if group == 1:
        for k in range(width):
            mean[k] += base[k]
        return mean, m2
    # The group columns of a channel hold equally many values (na each).
    cmean = np.empty(C)
    cm2 = np.empty(C)
    for c in range(C):
        k0 = c * group
        s = 0.0
        for k in range(k0, k0 + group):
            mean[k] += base[k] - base[k0]        # relative to base[k0] now
            s += mean[k]
        mc = s / group
        between = 0.0
        within = 0.0
        for k in range(k0, k0 + group):
            d = mean[k] - mc
            between += d * d
            within += m2[k]
        cmean[c] = base[k0] + mc
        cm2[c] = within + na * between
    return cmean, cm2


@jit()
def _merge_sums(s_a, s_b, C, group):
    """Per-channel totals of two partial-sum buffers, slots added in order."""
    nslots, width = s_a.shape
    ta = s_a[0].copy()
    tb = s_b[0].copy()
    for slot in range(1, nslots):
        for k in range(width):
            ta[k] += s_a[slot, k]
            tb[k] += s_b[slot, k]
    if group == 1:
        return ta, tb
    ca = np.zeros(C)
    cb = np.zeros(C)
    for c in range(C):
        for k in range(c * group, c * group + group):
            ca[c] += ta[k]
            cb[c] += tb[k]
    return ca, cb


@jit()
def _per_column(v, planes, S):
    """Per-channel coefficients as the drivers' tiles want them."""
    if planes or S == 1:
        return v
    out = np.empty(v.size * S, v.dtype)
    for c in range(v.size):
        out[c * S:(c + 1) * S] = v[c]
    return out


@jit()
def _forward_coefficients(mean, invstd, weight, bias, has_weight, has_bias, dtype_probe):
    """(center, scale, offset) in x's dtype: y = (x - center) * scale + offset."""
    C = mean.size
    center = np.empty(C, dtype_probe.dtype)
    scale = np.empty(C, dtype_probe.dtype)
    offset = np.empty(C, dtype_probe.dtype)
    for c in range(C):
        center[c] = mean[c]
        sc = invstd[c] * weight[c] if has_weight else invstd[c]
        off = np.float64(center[c]) - mean[c]
        off *= sc
        if has_bias:
            off += bias[c]
        scale[c] = sc
        offset[c] = off
    return center, scale, offset


@jit()
def _batch_statistics(plan, x2, C, S, shifts, p1, p2, rmean, rvar, has_rmean, has_rvar,
                      momentum, eps):
    """After the moments pass: mean, invstd (float64); running stats updated."""
    N = x2.shape[0]
    counts = _slot_counts(plan, N, S)
    mean, m2 = _merge_moments(shifts, p1, p2, counts, C, 1 if plan[0] else S)
    n = N * S
    invstd = np.empty(C)
    for c in range(C):
        invstd[c] = 1.0 / np.sqrt(m2[c] / n + eps)
        if has_rmean:
            rmean[c] = (1.0 - momentum) * rmean[c] + momentum * mean[c]
        if has_rvar:
            rvar[c] = (1.0 - momentum) * rvar[c] + momentum * (m2[c] / (n - 1))
    return mean, invstd


@jit()
def _running_statistics(rmean, rvar, eps):
    C = rmean.size
    mean = np.empty(C)
    invstd = np.empty(C)
    for c in range(C):
        mean[c] = rmean[c]
        invstd[c] = 1.0 / np.sqrt(np.float64(rvar[c]) + eps)
    return mean, invstd


@jit()
def _grad_scale(weight, has_weight, invstd, dtype_probe):
    """k1 = weight * invstd per channel, in x's dtype (evaluation backward)."""
    k1 = np.empty(invstd.size, dtype_probe.dtype)
    for c in range(invstd.size):
        k1[c] = np.float64(invstd[c]) * weight[c] if has_weight else invstd[c]
    return k1


@jit()
def _backward_coefficients(N, S, sum_dy, sum_dyx, weight, has_weight, mean, invstd,
                           training, dtype_probe):
    """Per-channel (dy_center, k1, k2, t) in x's dtype, and dweight, dbias."""
    C = mean.size
    n = N * S
    dt = dtype_probe.dtype
    dy_center = np.empty(C, dt)
    k1 = np.empty(C, dt)
    k2 = np.empty(C, dt)
    tc = np.empty(C, dt)
    dweight = np.empty(C, dt)
    for c in range(C):
        istd = np.float64(invstd[c])
        a = istd * weight[c] if has_weight else istd
        k1[c] = a
        dweight[c] = istd * sum_dyx[c]
        if training:
            mdy = sum_dy[c] / n
            dy_center[c] = mdy
            k2[c] = -a * istd * istd * (sum_dyx[c] / n)
            tc[c] = a * (np.float64(dy_center[c]) - mdy)
    dbias = sum_dy.astype(dt)
    return dy_center, k1, k2, tc, dweight, dbias


# ----------------------------------------------------------------------------
# Drivers.  Each serial/parallel pair is the same code but for range/prange
# (two functions, not two compilations of one: numba's disk cache keys an
# entry by function, not by its flags, and would mix them up).

@jit()
def _forward_serial(x2, C, S, weight, bias, rmean, rvar, has_weight, has_bias,
                    has_rmean, has_rvar, training, momentum, eps, y2, mean_out, invstd_out):
    plan = _plan(x2.shape[0], C, S)
    if training:
        width = C if plan[0] else C * S
        shifts = np.empty((plan[5], width))
        p1 = np.empty((plan[5], width))
        p2 = np.empty((plan[5], width))
        for t in range(plan[6]):
            _moments_pass_tile(plan, t, x2, C, S, shifts, p1, p2)
        mean, invstd = _batch_statistics(plan, x2, C, S, shifts, p1, p2, rmean, rvar,
                                         has_rmean, has_rvar, momentum, eps)
    else:
        mean, invstd = _running_statistics(rmean, rvar, eps)
    center, scale, offset = _forward_coefficients(mean, invstd, weight, bias,
                                                  has_weight, has_bias, y2)
    mean_out[:] = center
    invstd_out[:] = invstd
    center = _per_column(center, plan[0], S)
    scale = _per_column(scale, plan[0], S)
    offset = _per_column(offset, plan[0], S)
    for t in range(plan[6]):
        _affine_pass_tile(plan, t, x2, y2, C, S, center, scale, offset)


@jit(parallel=True)
def _forward_parallel(x2, C, S, weight, bias, rmean, rvar, has_weight, has_bias,
                      has_rmean, has_rvar, training, momentum, eps, y2, mean_out, invstd_out):
    plan = _plan(x2.shape[0], C, S)
    if training:
        width = C if plan[0] else C * S
        shifts = np.empty((plan[5], width))
        p1 = np.empty((plan[5], width))
        p2 = np.empty((plan[5], width))
        for t in prange(plan[6]):
            _moments_pass_tile(plan, t, x2, C, S, shifts, p1, p2)
        mean, invstd = _batch_statistics(plan, x2, C, S, shifts, p1, p2, rmean, rvar,
                                         has_rmean, has_rvar, momentum, eps)
    else:
        mean, invstd = _running_statistics(rmean, rvar, eps)
    center, scale, offset = _forward_coefficients(mean, invstd, weight, bias,
                                                  has_weight, has_bias, y2)
    mean_out[:] = center
    invstd_out[:] = invstd
    center = _per_column(center, plan[0], S)
    scale = _per_column(scale, plan[0], S)
    offset = _per_column(offset, plan[0], S)
    for t in prange(plan[6]):
        _affine_pass_tile(plan, t, x2, y2, C, S, center, scale, offset)


@jit()
def _backward_serial(dy2, x2, C, S, weight, has_weight, mean, invstd, training,
                     dx2, dweight_out, dbias_out):
    plan = _plan(x2.shape[0], C, S)
    width = C if plan[0] else C * S
    need_sums = training or has_weight
    s_dy = np.empty((plan[5], width))
    s_dyx = np.empty((plan[5], width))
    center = mean.astype(np.float64)
    center_cols = _per_column(center, plan[0], S)
    if training:
        for t in range(plan[6]):
            _grad_sums_pass_tile(plan, t, dy2, x2, C, S, center_cols, center, s_dy, s_dyx)
    else:
        k1 = _per_column(_grad_scale(weight, has_weight, invstd, dx2), plan[0], S)
        for t in range(plan[6]):
            _eval_grad_pass_tile(plan, t, dy2, x2, dx2, C, S, k1, need_sums,
                                 center_cols, center, s_dy, s_dyx)
    if need_sums:
        sum_dy, sum_dyx = _merge_sums(s_dy, s_dyx, C, 1 if plan[0] else S)
    else:
        sum_dy, sum_dyx = center, center
    dy_center, k1, k2, tc, dweight, dbias = _backward_coefficients(
        x2.shape[0], S, sum_dy, sum_dyx, weight, has_weight, mean, invstd,
        training, dx2)
    if has_weight:
        dweight_out[:] = dweight
        dbias_out[:] = dbias
    if training:
        dy_center = _per_column(dy_center, plan[0], S)
        k1 = _per_column(k1, plan[0], S)
        x_center = _per_column(mean, plan[0], S)
        k2 = _per_column(k2, plan[0], S)
        tc = _per_column(tc, plan[0], S)
        for t in range(plan[6]):
            _grad_input_pass_tile(plan, t, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2, tc)


@jit(parallel=True)
def _backward_parallel(dy2, x2, C, S, weight, has_weight, mean, invstd, training,
                       dx2, dweight_out, dbias_out):
    plan = _plan(x2.shape[0], C, S)
    width = C if plan[0] else C * S
    need_sums = training or has_weight
    s_dy = np.empty((plan[5], width))
    s_dyx = np.empty((plan[5], width))
    center = mean.astype(np.float64)
    center_cols = _per_column(center, plan[0], S)
    if training:
        for t in prange(plan[6]):
            _grad_sums_pass_tile(plan, t, dy2, x2, C, S, center_cols, center, s_dy, s_dyx)
    else:
        k1 = _per_column(_grad_scale(weight, has_weight, invstd, dx2), plan[0], S)
        for t in prange(plan[6]):
            _eval_grad_pass_tile(plan, t, dy2, x2, dx2, C, S, k1, need_sums,
                                 center_cols, center, s_dy, s_dyx)
    if need_sums:
        sum_dy, sum_dyx = _merge_sums(s_dy, s_dyx, C, 1 if plan[0] else S)
    else:
        sum_dy, sum_dyx = center, center
    dy_center, k1, k2, tc, dweight, dbias = _backward_coefficients(
        x2.shape[0], S, sum_dy, sum_dyx, weight, has_weight, mean, invstd,
        training, dx2)
    if has_weight:
        dweight_out[:] = dweight
        dbias_out[:] = dbias
    if training:
        dy_center = _per_column(dy_center, plan[0], S)
        k1 = _per_column(k1, plan[0], S)
        x_center = _per_column(mean, plan[0], S)
        k2 = _per_column(k2, plan[0], S)
        tc = _per_column(tc, plan[0], S)
        for t in prange(plan[6]):
            _grad_input_pass_tile(plan, t, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2, tc)


# ----------------------------------------------------------------------------
# The backend's kernels (contract in fastnn/backends/__init__.py).

# Stand-ins for absent optional arrays: one compiled signature serves calls
# with and without weight, bias and running statistics.
_ABSENT = {np.dtype(np.float32): np.zeros(0, np.float32),
           np.dtype(np.float64): np.zeros(0, np.float64)}


def _as_rows(a, N, L):
    """C-contiguous (N, L) view of a, copying only when a is not C-contiguous."""
    if a.ndim == 2 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a).reshape(N, L)


def batchnorm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    N, C = x.shape[0], x.shape[1]
    L = x.size // N
    x2 = _as_rows(x, N, L)
    absent = _ABSENT[x.dtype]
    y2 = np.empty((N, L), x.dtype)
    mean = np.empty(C, x.dtype)
    invstd = np.empty(C, x.dtype)
    kernel = _forward_parallel if use_parallel(x.size) else _forward_serial
    kernel(x2, C, L // C,
           absent if weight is None else weight, absent if bias is None else bias,
           absent if running_mean is None else running_mean,
           absent if running_var is None else running_var,
           weight is not None, bias is not None,
           running_mean is not None, running_var is not None,
           bool(training), float(momentum), float(eps), y2, mean, invstd)
    return y2.reshape(x.shape), mean, invstd


def batchnorm_backward(dy, x, weight, mean, invstd, training):
    N, C = x.shape[0], x.shape[1]
    L = x.size // N
    x2 = _as_rows(x, N, L)
    dy2 = _as_rows(dy, N, L)
    dx2 = np.empty((N, L), x.dtype)
    has_weight = weight is not None
    dweight = np.empty(C, x.dtype) if has_weight else _ABSENT[x.dtype]
    dbias = np.empty(C, x.dtype) if has_weight else _ABSENT[x.dtype]
    kernel = _backward_parallel if use_parallel(x.size) else _backward_serial
    kernel(dy2, x2, C, L // C, weight if has_weight else _ABSENT[x.dtype], has_weight,
           mean, invstd, bool(training), dx2, dweight, dbias)
    if not has_weight:
        return dx2.reshape(x.shape), None, None
    return dx2.reshape(x.shape), dweight, dbias
