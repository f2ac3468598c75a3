"""Batch normalization, the Numba kernels: two passes forward, two backward.

Shapes: x, y, dy, dx are (N, C, *spatial); S = prod(spatial) (1 for (N, C));
statistics are per channel over n = N * S values.  Every kernel works on the
C-contiguous 2-D view x2 = x.reshape(N, L), L = C * S, where column j belongs
to channel j // S (a non-contiguous x is copied first).  The formulas are
those of the NumPy reference (``fastnn/_backends/numpy/batchnorm.py``); this
file explains the tricks.

Forward, training (x read twice, y written once):
  1. moments pass: shifted sums sum(x - K) and sum((x - K)^2), K = x[0, c, 0]
     one value of the channel, so they do not cancel the way E[x^2] - E[x]^2
     does (see _channel_shifts).  Runs of 8 rows are summed in x's dtype,
     their totals in float64.  The running statistics are updated from the
     same sums right after the pass.
  2. affine pass: y = (x - m) * scale + offset, m the mean rounded to x's
     dtype (x - m is exact for data near the mean), the rounding of m
     restored in offset = bias + (m - mean) * scale; weight, bias, mean and
     invstd are folded per channel in float64.
  Saves mean (= m) and invstd = 1/sqrt(var + eps), in x's dtype.
Forward, evaluation: the affine pass alone, with the running statistics.
Backward, training (dy and x read twice, dx written once):
  1. sums pass: sum(dy) and sum(dy * (x - mean)) together (x-hat is never
     stored), summed as in the moments pass.  dbias = sum(dy),
     dweight = invstd * sum(dy * (x - mean)).
  2. dx = (dy - mdy) * k1 + (x - mean) * k2 + t, with k1 = weight * invstd,
     k2 = -k1 * invstd^2 * sum(dy * (x - mean)) / n, mdy = sum(dy) / n
     rounded to x's dtype and t the compensation of that rounding.
Backward, evaluation: one pass, dx = dy * k1, with the two sums taken from
the same tile while it is in cache when dweight and dbias are wanted.

Work tiles (two layouts, chosen by S):
- "rows" (S < _PLANE_MIN_S, e.g. (N, C)): a tile is a block of rows times up
  to _MAX_TILE_COLUMNS columns, which may span many channels; the inner loop
  runs along a row (vectorized across columns) into one accumulator per
  column.  Partial sums are kept per column and row block.
- "planes" (S >= _PLANE_MIN_S, e.g. (N, C, H, W)): a tile is one channel's
  planes x[n0:n1, c, :] (or a chunk of them when a plane exceeds a tile),
  read front to back in chunks of _LANES values into _LANES accumulators,
  folded pairwise into one partial sum per tile.
- channel at a time ("planes", training, a channel of a few MB at most): one
  thread runs both passes of a channel back to back (moments, statistics,
  y; or the two sums, coefficients, dx), so the second pass reads the
  channel from cache and x (dy and x) leave memory once, not twice.  Same
  tiles, same order of additions: the same bits as pass by pass.
Outputs far larger than the caches (y; dx in training) are written with
streaming stores, which skip reading each line before writing it
(_intrinsics.py); the values are the same bits.
Tile sizes depend on the shape alone; each tile writes its partial sums into
its own slot, and slots are added afterwards in slot order.  The serial and
parallel drivers run the very same tiles (range vs prange), so results are
bitwise identical for every thread count; the serial one serves inputs below
``use_parallel``'s size or of one tile, where waking threads costs more than
it saves.

Test: the conformance suite (tests/, every backend) checks values, running
statistics, gradients and layouts against the float64 oracle.  Bench:
``python -m fastnn bench --kernels batchnorm``.
"""

import numpy as np
from numba import prange

from ._intrinsics import STREAM_BYTES, entry, store_fence, stream_affine, stream_grad_input
from ._jit import jit, serial_and_parallel, use_parallel

# Tiles aim at about this many values (256 KiB of float32: a tile and its
# float64 partials stay in L2).
_TILE_ELEMENTS = 1 << 16
# A "rows" tile has at least this many rows, so that the per-column partials
# (16 bytes per column and row block) stay small against the data.
_MIN_TILE_ROWS = 64
# Columns of one "rows" tile at most: its accumulators stay in L1.
_MAX_TILE_COLUMNS = 1024
# Rows (or plane chunks) summed in x's dtype before their total goes into a
# float64 accumulator: float32 arithmetic runs 8 lanes wide where float64
# runs 4, and the rounding of a run of 8 float32 values (about 8 * 6e-8
# relative) is far below what float32 results can show.
_RUN_ROWS = 8
# Spatial size from which the "planes" layout is used: below it a plane is
# too short a stretch of memory to stream well, and "rows" reads whole rows.
_PLANE_MIN_S = 256
# A "planes" tile reads its planes as consecutive chunks of _LANES values.
_LANES = 128
# Training on a "planes" input runs channel at a time (both passes of a
# channel back to back, the second reading the channel from cache) when the
# channel's data that the second pass reads again (x forward; dy and x
# backward) is at most _CHANNEL_CACHE_BYTES, and there are _MIN_CHANNELS
# channels or more for the threads to share.  Measured on the project
# machine (float32, 2 threads), pass by pass -> channel at a time:
# backward (32,64,56,56) 6.5 -> 5.7 ms, (64,128,56,56) 31.1 -> 19.7 ms,
# (256,32,16,16) 5.0 -> 3.2 ms; but (128,32,112,112), 12.8 MB per channel,
# 51 -> 57 ms.  Forward gains less (it saves one read of three) and lost
# on channels of 33 and 66 KB ((8,256,32,32) 0.87 -> 1.30 ms, data that
# the pass-by-pass passes find in cache anyway), so it also needs a
# channel of _FORWARD_MIN_CHANNEL_BYTES: (32,64,56,56) 4.4 -> 4.0 ms,
# (128,64,28,28) 7.5 -> 5.6 ms.
_CHANNEL_CACHE_BYTES = 4 << 20
# Outputs (y, and dx in training) of at least this many bytes are written
# with streaming stores (_intrinsics.py): beyond the caches' size a plain
# store first reads the line it writes.  Measured, float32, 2 threads, out=,
# caches flushed, medians of three sets in one process, plain -> streamed:
# forward (65536,256) 15.0-16.6 -> 11.8-15.2 ms, (32,64,56,56) 4.6-5.5 ->
# 3.5-3.8 ms, (64,128,56,56) 15.5-15.9 -> 13.0-13.4 ms; backward
# (64,128,56,56) 21.7-22.5 -> 19.1-19.5 ms, (65536,256) level (21-24 ms).
_STREAM_MIN_BYTES = 8 << 20
_FORWARD_MIN_CHANNEL_BYTES = 128 << 10
_MIN_CHANNELS = 8


@jit()
def _cdiv(a, b):
    return (a + b - 1) // b


# ----------------------------------------------------------------------------
# Tiling.  A plan is (planes, R, nrb, W, ncb, nslots, ntiles):
#   rows:   tile t = (row block t // ncb, column chunk t % ncb), slot = row block;
#           W columns per chunk.
#   planes: tile t = (slot t // C, channel t % C), slot = (row block, chunk of
#           the plane), a chunk being W consecutive values (the whole plane
#           unless S exceeds a tile).

@jit()
def _plan(N, C, S):
    L = C * S
    if S >= _PLANE_MIN_S:
        ncb = _cdiv(S, _TILE_ELEMENTS)
        W = _cdiv(_cdiv(S, ncb), _LANES) * _LANES
        ncb = _cdiv(S, W)
        nrb = max(1, min(N, (N * min(S, W)) // _TILE_ELEMENTS))
        R = _cdiv(N, nrb)
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


# ----------------------------------------------------------------------------
# Tile kernels.  Each works on rows n0:n1 and columns j0:j1 of 2-D arrays;
# per-column vectors (shift, accumulators, coefficients) have length j1 - j0.
# Their small loops (clearing and flushing the run sums, the plain-store row
# loop beside the streamed one) are written out where they run: moved into
# helpers, they made narrow inputs slower, e.g. the backward at (4096, 64)
# 216-225 -> 245-252 us (float32, 2 threads, out=, one process per version).

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
def _moments_tile(x2, n0, n1, j0, j1, shift, acc1, acc2, run1, run2):
    """acc1 = sum(x - shift), acc2 = sum((x - shift)^2) over rows n0:n1.

    shift holds values of x itself, so x - shift is exact in x's dtype for
    data near it.  Runs of _RUN_ROWS rows are summed in x's dtype (run1,
    run2: full-width vectors, 8 float32 per instruction) and each run total
    is added into the float64 accumulators acc1, acc2.
    """
    W = j1 - j0
    for i in range(W):
        acc1[i] = 0.0
        acc2[i] = 0.0
    for r0 in range(n0, n1, _RUN_ROWS):
        xr = x2[r0, j0:j1]
        for i in range(W):
            d = xr[i] - shift[i]
            run1[i] = d
            run2[i] = d * d
        for n in range(r0 + 1, min(n1, r0 + _RUN_ROWS)):
            xr = x2[n, j0:j1]
            for i in range(W):
                d = xr[i] - shift[i]
                run1[i] += d
                run2[i] += d * d
        for i in range(W):
            acc1[i] += run1[i]
            acc2[i] += run2[i]


@jit()
def _grad_sums_tile(dy2, x2, n0, n1, j0, j1, center, acc_dy, acc_dyx, run1, run2):
    """acc_dy = sum(dy), acc_dyx = sum(dy * (x - center)) over rows n0:n1.

    Summed as _moments_tile does: runs in x's dtype, totals in float64.
    """
    W = j1 - j0
    for i in range(W):
        acc_dy[i] = 0.0
        acc_dyx[i] = 0.0
    for r0 in range(n0, n1, _RUN_ROWS):
        gr = dy2[r0, j0:j1]
        xr = x2[r0, j0:j1]
        for i in range(W):
            run1[i] = gr[i]
            run2[i] = gr[i] * (xr[i] - center[i])
        for n in range(r0 + 1, min(n1, r0 + _RUN_ROWS)):
            gr = dy2[n, j0:j1]
            xr = x2[n, j0:j1]
            for i in range(W):
                run1[i] += gr[i]
                run2[i] += gr[i] * (xr[i] - center[i])
        for i in range(W):
            acc_dy[i] += run1[i]
            acc_dyx[i] += run2[i]


@jit()
def _moments_plane_tile(x2, n0, n1, j0, j1, k, acc1, acc2, run1, run2):
    """_moments_tile for one channel's stretch x2[n0:n1, j0:j1] and one shift k.

    Each row's stretch is read front to back as chunks of L = acc1.size
    values (lane i of every chunk adds into lane i of the accumulators);
    runs of _RUN_ROWS chunks are summed in x's dtype, then in float64; the
    last partial chunk of each row goes straight into float64.
    """
    L = acc1.size
    for i in range(L):
        acc1[i] = 0.0
        acc2[i] = 0.0
        run1[i] = 0.0
        run2[i] = 0.0
    M = j1 - j0
    full = M - M % L
    in_run = 0
    for n in range(n0, n1):
        for q in range(j0, j0 + full, L):
            xs = x2[n, q:q + L]
            for i in range(L):
                d = xs[i] - k
                run1[i] += d
                run2[i] += d * d
            in_run += 1
            if in_run == _RUN_ROWS:
                for i in range(L):
                    acc1[i] += run1[i]
                    acc2[i] += run2[i]
                    run1[i] = 0.0
                    run2[i] = 0.0
                in_run = 0
        xs = x2[n, j0 + full:j1]
        for i in range(M - full):
            d = np.float64(xs[i]) - k
            acc1[i] += d
            acc2[i] += d * d
    for i in range(L):
        acc1[i] += run1[i]
        acc2[i] += run2[i]


@jit()
def _grad_sums_plane_tile(dy2, x2, n0, n1, j0, j1, center, acc_dy, acc_dyx, run1, run2):
    """_grad_sums_tile for one channel's stretch, read as _moments_plane_tile reads it."""
    L = acc_dy.size
    for i in range(L):
        acc_dy[i] = 0.0
        acc_dyx[i] = 0.0
        run1[i] = 0.0
        run2[i] = 0.0
    M = j1 - j0
    full = M - M % L
    in_run = 0
    for n in range(n0, n1):
        for q in range(j0, j0 + full, L):
            gs = dy2[n, q:q + L]
            xs = x2[n, q:q + L]
            for i in range(L):
                run1[i] += gs[i]
                run2[i] += gs[i] * (xs[i] - center)
            in_run += 1
            if in_run == _RUN_ROWS:
                for i in range(L):
                    acc_dy[i] += run1[i]
                    acc_dyx[i] += run2[i]
                    run1[i] = 0.0
                    run2[i] = 0.0
                in_run = 0
        gs = dy2[n, j0 + full:j1]
        xs = x2[n, j0 + full:j1]
        for i in range(M - full):
            g = np.float64(gs[i])
            acc_dy[i] += g
            acc_dyx[i] += g * (np.float64(xs[i]) - center)
    for i in range(L):
        acc_dy[i] += run1[i]
        acc_dyx[i] += run2[i]


@jit()
def _stream_start(Y, n, j0, j1):
    """The first column j >= j0 (j1 at most) where Y[n, j] starts a
    STREAM_BYTES-aligned vector: streaming stores need aligned addresses."""
    address = Y.ctypes.data + n * Y.strides[0] + j0 * Y.itemsize
    return min(j1, j0 + ((-address) % STREAM_BYTES) // Y.itemsize)


@jit()
def _affine_tile(x2, y2, n0, n1, j0, j1, center, scale, offset, stream):
    """y = (x - center) * scale + offset on rows n0:n1, columns j0:j1.

    Each coefficient is a scalar (one channel's) or an array with one entry
    per column of the tile.  With ``stream`` the aligned middle of each row
    goes out through streaming stores (_intrinsics.py), and the tile ends
    with a store fence.
    """
    W = j1 - j0
    for n in range(n0, n1):
        xr = x2[n, j0:j1]
        yr = y2[n, j0:j1]
        if not stream:
            for i in range(W):
                yr[i] = (xr[i] - entry(center, i)) * entry(scale, i) + entry(offset, i)
            continue
        lanes = STREAM_BYTES // y2.itemsize
        head = _stream_start(y2, n, j0, j1) - j0
        body = head + (W - head) // lanes * lanes
        for i in range(head):
            yr[i] = (xr[i] - entry(center, i)) * entry(scale, i) + entry(offset, i)
        for i in range(head, body, lanes):
            stream_affine(y2, n, j0 + i, x2, center, scale, offset, i)
        for i in range(body, W):
            yr[i] = (xr[i] - entry(center, i)) * entry(scale, i) + entry(offset, i)
    if stream:
        store_fence()


@jit()
def _grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center, k1, x_center, k2, t, stream):
    """dx = (dy - dy_center) * k1 + (x - x_center) * k2 + t on rows n0:n1,
    columns j0:j1; coefficients and ``stream`` as in _affine_tile."""
    W = j1 - j0
    for n in range(n0, n1):
        gr = dy2[n, j0:j1]
        xr = x2[n, j0:j1]
        dr = dx2[n, j0:j1]
        if not stream:
            for i in range(W):
                dr[i] = ((gr[i] - entry(dy_center, i)) * entry(k1, i)
                         + (xr[i] - entry(x_center, i)) * entry(k2, i) + entry(t, i))
            continue
        lanes = STREAM_BYTES // dx2.itemsize
        head = _stream_start(dx2, n, j0, j1) - j0
        body = head + (W - head) // lanes * lanes
        for i in range(head):
            dr[i] = ((gr[i] - entry(dy_center, i)) * entry(k1, i)
                     + (xr[i] - entry(x_center, i)) * entry(k2, i) + entry(t, i))
        for i in range(head, body, lanes):
            stream_grad_input(dx2, n, j0 + i, dy2, x2, dy_center, k1, x_center, k2, t, i)
        for i in range(body, W):
            dr[i] = ((gr[i] - entry(dy_center, i)) * entry(k1, i)
                     + (xr[i] - entry(x_center, i)) * entry(k2, i) + entry(t, i))
    if stream:
        store_fence()


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
# Per-column vectors (``*_cols``) have length L ("rows"); per-channel ones
# length C ("planes" tiles read entry c).

@jit()
def _moments_pass_tile(plan, t, x2, C, S, shift_cols, shift, s1, s2):
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    W = j1 - j0
    run1 = np.empty(max(W, _LANES), x2.dtype)
    run2 = np.empty(max(W, _LANES), x2.dtype)
    if c < 0:
        _moments_tile(x2, n0, n1, j0, j1, shift_cols[j0:j1],
                      s1[slot, j0:j1], s2[slot, j0:j1], run1, run2)
    else:
        acc1 = np.empty(_LANES)
        acc2 = np.empty(_LANES)
        _moments_plane_tile(x2, n0, n1, j0, j1, shift[c], acc1, acc2,
                            run1[:_LANES], run2[:_LANES])
        s1[slot, c] = _fold_sum(acc1, _LANES)
        s2[slot, c] = _fold_sum(acc2, _LANES)


@jit()
def _grad_sums_pass_tile(plan, t, dy2, x2, C, S, center_cols, center, s_dy, s_dyx):
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    W = j1 - j0
    run1 = np.empty(max(W, _LANES), x2.dtype)
    run2 = np.empty(max(W, _LANES), x2.dtype)
    if c < 0:
        _grad_sums_tile(dy2, x2, n0, n1, j0, j1, center_cols[j0:j1],
                        s_dy[slot, j0:j1], s_dyx[slot, j0:j1], run1, run2)
    else:
        acc_dy = np.empty(_LANES)
        acc_dyx = np.empty(_LANES)
        _grad_sums_plane_tile(dy2, x2, n0, n1, j0, j1, center[c], acc_dy, acc_dyx,
                              run1[:_LANES], run2[:_LANES])
        s_dy[slot, c] = _fold_sum(acc_dy, _LANES)
        s_dyx[slot, c] = _fold_sum(acc_dyx, _LANES)


@jit()
def _affine_pass_tile(plan, t, x2, y2, C, S, center, scale, offset, stream):
    """Coefficients are per column ("rows") or per channel ("planes")."""
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        _affine_tile(x2, y2, n0, n1, j0, j1, center[j0:j1], scale[j0:j1], offset[j0:j1],
                     stream)
    else:
        _affine_tile(x2, y2, n0, n1, j0, j1, center[c], scale[c], offset[c], stream)


@jit()
def _grad_input_pass_tile(plan, t, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2, tc,
                          stream):
    slot, c, n0, n1, j0, j1 = _tile(plan, t, x2.shape[0], C, S)
    if c < 0:
        _grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center[j0:j1], k1[j0:j1],
                         x_center[j0:j1], k2[j0:j1], tc[j0:j1], stream)
    else:
        _grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center[c], k1[c],
                         x_center[c], k2[c], tc[c], stream)


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
# Between the passes: partial-sum buffers, combining the slots, per-channel
# coefficients.  An absent optional array is a zero-length one.

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
    """Per-channel values as the tiles read them: as is for "planes" and
    S == 1, else repeated S times (one entry per column of x2)."""
    if planes or S == 1:
        return v
    out = np.empty(v.size * S, v.dtype)
    for c in range(v.size):
        out[c * S:(c + 1) * S] = v[c]
    return out


@jit()
def _partial_buffers(plan, C, S):
    """Two float64 buffers with one row of partial sums per slot."""
    width = C if plan[0] else C * S
    return np.empty((plan[5], width)), np.empty((plan[5], width))


@jit()
def _channel_shifts(x2, C, S):
    """K[c] = x[0, c, 0]: one value of each channel, subtracted before summing.

    Sums of x - K lose no accuracy to a large mean: the variance
    sum((x - K)^2)/n - (mean - K)^2 cancels only by (mean - K)^2 / var, and
    K being one of the channel's own n values bounds that ratio by n (it is
    a few units for any ordinary data), so float64 sums stay accurate.
    """
    shift = np.empty(C, x2.dtype)
    for c in range(C):
        shift[c] = x2[0, c * S]
    return shift


@jit()
def _channel_statistics(c, sum1, sum2, n, shift, running_mean, running_var,
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
def _batch_statistics(plan, N, C, S, shift, s1, s2, running_mean, running_var,
                      momentum, eps, invstd_out):
    """Batch mean (float64, returned) and invstd (into invstd_out) from the
    moments pass; the running statistics updated in place."""
    sum1, sum2 = _merge_sums(s1, s2, C, 1 if plan[0] else S)
    mean = np.empty(C)
    for c in range(C):
        mean[c] = _channel_statistics(c, sum1[c], sum2[c], N * S, shift[c], running_mean,
                                      running_var, momentum, eps, invstd_out)
    return mean


@jit()
def _running_statistics(running_mean, running_var, eps, invstd_out):
    """Evaluation: the running mean (float64) and its invstd into invstd_out."""
    mean = np.empty(running_mean.size)
    for c in range(running_mean.size):
        mean[c] = running_mean[c]
        invstd_out[c] = 1.0 / np.sqrt(np.float64(running_var[c]) + eps)
    return mean


@jit()
def _channel_affine(c, mean, invstd, weight, bias, mean_out):
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
def _affine_coefficients(plan, S, mean, invstd, weight, bias, mean_out):
    """(center, scale, offset) of every channel (_channel_affine), per column."""
    C = mean.size
    scale = np.empty(C, mean_out.dtype)
    offset = np.empty(C, mean_out.dtype)
    for c in range(C):
        _, scale[c], offset[c] = _channel_affine(c, mean[c], invstd[c], weight, bias,
                                                 mean_out)
    planes = plan[0]
    return (_per_column(mean_out, planes, S), _per_column(scale, planes, S),
            _per_column(offset, planes, S))


@jit()
def _grad_scale(plan, S, weight, invstd):
    """k1 = weight * invstd in x's dtype, per column (evaluation backward)."""
    k1 = np.empty(invstd.size, invstd.dtype)
    for c in range(invstd.size):
        k1[c] = np.float64(invstd[c]) * weight[c] if weight.size else invstd[c]
    return _per_column(k1, plan[0], S)


@jit()
def _channel_weight_grads(c, sum_dy, sum_dyx, invstd, dweight_out, dbias_out):
    """dbias[c] = sum(dy), dweight[c] = invstd * sum(dy * (x - mean)), when
    the call has a weight (else the outputs are empty)."""
    if dweight_out.size:
        dweight_out[c] = np.float64(invstd[c]) * sum_dyx
        dbias_out[c] = sum_dy


@jit()
def _channel_grad_coefficients(c, n, sum_dy, sum_dyx, weight, invstd, dweight_out,
                               dbias_out):
    """Channel c's (dy_center, k1, k2, t) in x's dtype for
    dx = (dy - dy_center) * k1 + (x - mean) * k2 + t; dweight, dbias written.

    dweight and dbias as in _channel_weight_grads; k1 = weight * invstd and
    k2 = -k1 * invstd^2 * sum(dy * (x - mean)) / n; dy_center is mean(dy)
    rounded to x's dtype (dy - dy_center is then exact for dy near its mean)
    and t = k1 * (dy_center - mean(dy)) restores the rounding.
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
def _weight_grads(plan, C, S, s_dy, s_dyx, invstd, dweight_out, dbias_out):
    """dweight and dbias of every channel from the partial sums."""
    sum_dy, sum_dyx = _merge_sums(s_dy, s_dyx, C, 1 if plan[0] else S)
    for c in range(C):
        _channel_weight_grads(c, sum_dy[c], sum_dyx[c], invstd, dweight_out, dbias_out)


@jit()
def _grad_input_coefficients(plan, N, C, S, s_dy, s_dyx, weight, mean, invstd,
                             dweight_out, dbias_out):
    """(dy_center, k1, x_center, k2, t) of every channel
    (_channel_grad_coefficients, x_center = mean), per column."""
    sum_dy, sum_dyx = _merge_sums(s_dy, s_dyx, C, 1 if plan[0] else S)
    dy_center = np.empty(C, invstd.dtype)
    k1 = np.empty(C, invstd.dtype)
    k2 = np.empty(C, invstd.dtype)
    t = np.empty(C, invstd.dtype)
    for c in range(C):
        dy_center[c], k1[c], k2[c], t[c] = _channel_grad_coefficients(
            c, N * S, sum_dy[c], sum_dyx[c], weight, invstd, dweight_out, dbias_out)
    planes = plan[0]
    return (_per_column(dy_center, planes, S), _per_column(k1, planes, S),
            _per_column(mean, planes, S), _per_column(k2, planes, S),
            _per_column(t, planes, S))


# ----------------------------------------------------------------------------
# Channel at a time ("planes" only): both passes of a channel run back to
# back in one thread, so the second pass finds the channel's data in cache
# and the data leaves memory once.  The tiles, sums and formulas are those
# of the pass-by-pass drivers, in the same order: the results are the same
# bits either way.

@jit()
def _channel_totals(s_a, s_b, c):
    """Channel c's entries of two partial-sum buffers, added in slot order."""
    ta = s_a[0, c]
    tb = s_b[0, c]
    for slot in range(1, s_a.shape[0]):
        ta += s_a[slot, c]
        tb += s_b[slot, c]
    return ta, tb


@jit()
def _channel_forward(plan, c, x2, y2, C, S, shift, s1, s2, weight, bias,
                     running_mean, running_var, momentum, eps, stream, mean_out, invstd_out):
    """Training forward of channel c: moments, statistics, then y."""
    N = x2.shape[0]
    nslots = plan[5]
    for slot in range(nslots):
        _moments_pass_tile(plan, slot * C + c, x2, C, S, shift, shift, s1, s2)
    sum1, sum2 = _channel_totals(s1, s2, c)
    mean = _channel_statistics(c, sum1, sum2, N * S, shift[c], running_mean, running_var,
                               momentum, eps, invstd_out)
    center, scale, offset = _channel_affine(c, mean, invstd_out[c], weight, bias, mean_out)
    for slot in range(nslots):
        _, _, n0, n1, j0, j1 = _tile(plan, slot * C + c, N, C, S)
        _affine_tile(x2, y2, n0, n1, j0, j1, center, scale, offset, stream)


@jit()
def _channel_backward(plan, c, dy2, x2, dx2, C, S, weight, mean, invstd, s_dy, s_dyx,
                      stream, dweight_out, dbias_out):
    """Training backward of channel c: the two sums, coefficients, then dx."""
    N = x2.shape[0]
    nslots = plan[5]
    for slot in range(nslots):
        _grad_sums_pass_tile(plan, slot * C + c, dy2, x2, C, S, mean, mean, s_dy, s_dyx)
    sum_dy, sum_dyx = _channel_totals(s_dy, s_dyx, c)
    dy_center, k1, k2, t = _channel_grad_coefficients(c, N * S, sum_dy, sum_dyx, weight,
                                                      invstd, dweight_out, dbias_out)
    for slot in range(nslots):
        _, _, n0, n1, j0, j1 = _tile(plan, slot * C + c, N, C, S)
        _grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center, k1, mean[c], k2, t, stream)


# ----------------------------------------------------------------------------
# Drivers: one source each, built twice by serial_and_parallel (in the serial
# build prange is range), so both builds run the very same tiles.

def _forward(x2, C, weight, bias, running_mean, running_var, training,
             momentum, eps, by_channel, stream, y2, mean_out, invstd_out):
    S = x2.shape[1] // C
    plan = _plan(x2.shape[0], C, S)
    if training:
        shift = _channel_shifts(x2, C, S)
        s1, s2 = _partial_buffers(plan, C, S)
        if by_channel:
            for c in prange(C):
                _channel_forward(plan, c, x2, y2, C, S, shift, s1, s2, weight, bias,
                                 running_mean, running_var, momentum, eps, stream,
                                 mean_out, invstd_out)
            return
        shift_cols = _per_column(shift, plan[0], S)
        for t in prange(plan[6]):
            _moments_pass_tile(plan, t, x2, C, S, shift_cols, shift, s1, s2)
        mean = _batch_statistics(plan, x2.shape[0], C, S, shift, s1, s2, running_mean,
                                 running_var, momentum, eps, invstd_out)
    else:
        mean = _running_statistics(running_mean, running_var, eps, invstd_out)
    center, scale, offset = _affine_coefficients(plan, S, mean, invstd_out, weight, bias,
                                                 mean_out)
    for t in prange(plan[6]):
        _affine_pass_tile(plan, t, x2, y2, C, S, center, scale, offset, stream)


def _backward(dy2, x2, C, weight, mean, invstd, training, by_channel, stream, dx2,
              dweight_out, dbias_out):
    S = x2.shape[1] // C
    plan = _plan(x2.shape[0], C, S)
    s_dy, s_dyx = _partial_buffers(plan, C, S)
    if training and by_channel:
        for c in prange(C):
            _channel_backward(plan, c, dy2, x2, dx2, C, S, weight, mean, invstd, s_dy,
                              s_dyx, stream, dweight_out, dbias_out)
        return
    mean_cols = _per_column(mean, plan[0], S)
    if training:
        for t in prange(plan[6]):
            _grad_sums_pass_tile(plan, t, dy2, x2, C, S, mean_cols, mean, s_dy, s_dyx)
        dy_center, k1, x_center, k2, tc = _grad_input_coefficients(
            plan, x2.shape[0], C, S, s_dy, s_dyx, weight, mean, invstd, dweight_out, dbias_out)
        for t in prange(plan[6]):
            _grad_input_pass_tile(plan, t, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2,
                                  tc, stream)
    else:
        k1 = _grad_scale(plan, S, weight, invstd)
        for t in prange(plan[6]):
            _eval_grad_pass_tile(plan, t, dy2, x2, dx2, C, S, k1, weight.size > 0,
                                 mean_cols, mean, s_dy, s_dyx)
        if weight.size:
            _weight_grads(plan, C, S, s_dy, s_dyx, invstd, dweight_out, dbias_out)


_forward_serial, _forward_parallel = serial_and_parallel(
    "void(F[:, ::1], int64, F[::1], F[::1], F[::1], F[::1], boolean, float64, float64, "
    "boolean, boolean, F[:, ::1], F[::1], F[::1])")(_forward)
_backward_serial, _backward_parallel = serial_and_parallel(
    "void(F[:, ::1], F[:, ::1], int64, F[::1], F[::1], F[::1], boolean, boolean, boolean, "
    "F[:, ::1], F[::1], F[::1])")(_backward)


# ----------------------------------------------------------------------------
# The backend's kernels (contract in fastnn/_backends/__init__.py).

def _by_channel(x, arrays, min_bytes=0):
    """Run training channel at a time?  ``arrays`` arrays of a channel (x, or
    dy and x) must fit in the cache budget, and x's channel have min_bytes."""
    N, C, S = x.shape
    if S == 1 or C < _MIN_CHANNELS:
        return False
    channel_bytes = N * S * x.itemsize
    return (S >= _PLANE_MIN_S
            and channel_bytes >= min_bytes
            and arrays * channel_bytes <= _CHANNEL_CACHE_BYTES)


def _streams(out):
    """Write ``out`` with streaming stores?  When it is far larger than the
    caches, so that reading its lines before writing them is pure cost."""
    return out.nbytes >= _STREAM_MIN_BYTES


def _parallel(n_elements):
    # Threads pay off only with two tiles or more to share.
    return n_elements > _TILE_ELEMENTS and use_parallel(n_elements)


def batchnorm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                      y, mean, invstd):
    N, C, S = x.shape
    by_channel = training and _by_channel(x, 1, _FORWARD_MIN_CHANNEL_BYTES)
    kernel = _forward_parallel if _parallel(x.size) else _forward_serial
    kernel(x.reshape(N, C * S), C, weight, bias, running_mean, running_var, training,
           momentum, eps, by_channel, _streams(y), y.reshape(N, C * S), mean, invstd)


def batchnorm_backward(dy, x, weight, mean, invstd, training, dx, dweight, dbias):
    N, C, S = x.shape
    kernel = _backward_parallel if _parallel(x.size) else _backward_serial
    kernel(dy.reshape(N, C * S), x.reshape(N, C * S), C, weight, mean, invstd, training,
           training and _by_channel(x, 2), training and _streams(dx), dx.reshape(N, C * S),
           dweight, dbias)
