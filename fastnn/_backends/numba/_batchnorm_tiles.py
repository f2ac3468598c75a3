"""Batch normalization, numba: the work tiles and what each pass does on one.

The plan of tiles (two layouts, "rows" and "planes") and the tile kernels
of the passes in ``batchnorm.py``'s drivers: moments, gradient sums, the
affine map, the input gradient.  Arrays are the C-contiguous 2-D view
x2 = x.reshape(N, C * S); column j belongs to channel j // S.  Tile sizes
depend on the shape alone (never the thread count), so results are the
same bits for any number of threads.
"""

import numpy as np

from ._intrinsics import STREAM_BYTES, entry, store_fence, stream_affine, stream_grad_input
from ._jit import jit

# Tiles aim at about this many values (256 KiB of float32: a tile and its
# float64 partials stay in L2).
TILE_ELEMENTS = 1 << 16
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
PLANE_MIN_S = 256
# A "planes" tile reads its planes as consecutive chunks of _LANES values.
_LANES = 128


@jit()
def _cdiv(a, b):
    return (a + b - 1) // b


# ----------------------------------------------------------------------------
# Tiling.  A plan is (planes, R, nrb, W, ncb, nslots, ntiles):
#   rows:   tile tile = (row block tile // ncb, column chunk tile % ncb), slot = row block;
#           W columns per chunk.
#   planes: tile tile = (slot tile // C, channel tile % C), slot = (row block, chunk of
#           the plane), a chunk being W consecutive values (the whole plane
#           unless S exceeds a tile).

@jit()
def plan_tiles(N, C, S):
    width = C * S
    if S >= PLANE_MIN_S:
        ncb = _cdiv(S, TILE_ELEMENTS)
        W = _cdiv(_cdiv(S, ncb), _LANES) * _LANES
        ncb = _cdiv(S, W)
        nrb = max(1, min(N, (N * min(S, W)) // TILE_ELEMENTS))
        R = _cdiv(N, nrb)
        nrb = _cdiv(N, R)
        nslots = nrb * ncb
        return True, R, nrb, W, ncb, nslots, nslots * C
    ncb = _cdiv(width, _MAX_TILE_COLUMNS)
    W = _cdiv(width, ncb)
    R = min(N, max(_MIN_TILE_ROWS, _cdiv(TILE_ELEMENTS, width)))
    nrb = _cdiv(N, R)
    return False, R, nrb, W, ncb, nrb, nrb * ncb


@jit()
def tile_extent(plan, tile, N, C, S):
    """(slot, channel, n0, n1, j0, j1) of tile tile; channel is -1 for "rows"."""
    planes, R, nrb, W, ncb, nslots, ntiles = plan
    if planes:
        slot = tile // C
        c = tile - slot * C
        rb = slot // ncb
        cb = slot - rb * ncb
        n0 = rb * R
        j0 = cb * W
        return slot, c, n0, min(N, n0 + R), c * S + j0, c * S + min(S, j0 + W)
    rb = tile // ncb
    cb = tile - rb * ncb
    n0 = rb * R
    j0 = cb * W
    return rb, -1, n0, min(N, n0 + R), j0, min(C * S, j0 + W)


# ----------------------------------------------------------------------------
# Tile kernels.  Each works on rows n0:n1 and columns j0:j1 of 2-D arrays;
# per-column vectors (shift, accumulators, coefficients) have length j1 - j0.
# Their small loops (clearing and flushing the run sums, the plain-store row
# loop beside the streamed one) are written out where they run: moved into
# helpers, they made narrow inputs slower (docs/PERFORMANCE.md).

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
def _moments_plane_tile(x2, n0, n1, j0, j1, shift, acc1, acc2, run1, run2):
    """_moments_tile for one channel's stretch x2[n0:n1, j0:j1] and one shift.

    Each row's stretch is read front to back as chunks of lanes = acc1.size
    values (lane i of every chunk adds into lane i of the accumulators);
    runs of _RUN_ROWS chunks are summed in x's dtype, then in float64; the
    last partial chunk of each row goes straight into float64.
    """
    lanes = acc1.size
    for i in range(lanes):
        acc1[i] = 0.0
        acc2[i] = 0.0
        run1[i] = 0.0
        run2[i] = 0.0
    span = j1 - j0
    full = span - span % lanes
    in_run = 0
    for n in range(n0, n1):
        for q in range(j0, j0 + full, lanes):
            xs = x2[n, q:q + lanes]
            for i in range(lanes):
                d = xs[i] - shift
                run1[i] += d
                run2[i] += d * d
            in_run += 1
            if in_run == _RUN_ROWS:
                for i in range(lanes):
                    acc1[i] += run1[i]
                    acc2[i] += run2[i]
                    run1[i] = 0.0
                    run2[i] = 0.0
                in_run = 0
        xs = x2[n, j0 + full:j1]
        for i in range(span - full):
            d = np.float64(xs[i]) - shift
            acc1[i] += d
            acc2[i] += d * d
    for i in range(lanes):
        acc1[i] += run1[i]
        acc2[i] += run2[i]


@jit()
def _grad_sums_plane_tile(dy2, x2, n0, n1, j0, j1, center, acc_dy, acc_dyx, run1, run2):
    """_grad_sums_tile for one channel's stretch, read as _moments_plane_tile reads it."""
    lanes = acc_dy.size
    for i in range(lanes):
        acc_dy[i] = 0.0
        acc_dyx[i] = 0.0
        run1[i] = 0.0
        run2[i] = 0.0
    span = j1 - j0
    full = span - span % lanes
    in_run = 0
    for n in range(n0, n1):
        for q in range(j0, j0 + full, lanes):
            gs = dy2[n, q:q + lanes]
            xs = x2[n, q:q + lanes]
            for i in range(lanes):
                run1[i] += gs[i]
                run2[i] += gs[i] * (xs[i] - center)
            in_run += 1
            if in_run == _RUN_ROWS:
                for i in range(lanes):
                    acc_dy[i] += run1[i]
                    acc_dyx[i] += run2[i]
                    run1[i] = 0.0
                    run2[i] = 0.0
                in_run = 0
        gs = dy2[n, j0 + full:j1]
        xs = x2[n, j0 + full:j1]
        for i in range(span - full):
            g = np.float64(gs[i])
            acc_dy[i] += g
            acc_dyx[i] += g * (np.float64(xs[i]) - center)
    for i in range(lanes):
        acc_dy[i] += run1[i]
        acc_dyx[i] += run2[i]


@jit()
def _stream_start(Y, n, j0, j1):
    """The first column j >= j0 (j1 at most) where Y[n, j] starts a
    STREAM_BYTES-aligned vector: streaming stores need aligned addresses."""
    address = Y.ctypes.data + n * Y.strides[0] + j0 * Y.itemsize
    return min(j1, j0 + ((-address) % STREAM_BYTES) // Y.itemsize)


@jit()
def affine_tile(x2, y2, n0, n1, j0, j1, center, scale, offset, stream):
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
def grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center, k1, x_center, k2, comp, stream):
    """dx = (dy - dy_center) * k1 + (x - x_center) * k2 + comp on rows n0:n1,
    columns j0:j1; coefficients and ``stream`` as in affine_tile."""
    W = j1 - j0
    for n in range(n0, n1):
        gr = dy2[n, j0:j1]
        xr = x2[n, j0:j1]
        dr = dx2[n, j0:j1]
        if not stream:
            for i in range(W):
                dr[i] = ((gr[i] - entry(dy_center, i)) * entry(k1, i)
                         + (xr[i] - entry(x_center, i)) * entry(k2, i) + entry(comp, i))
            continue
        lanes = STREAM_BYTES // dx2.itemsize
        head = _stream_start(dx2, n, j0, j1) - j0
        body = head + (W - head) // lanes * lanes
        for i in range(head):
            dr[i] = ((gr[i] - entry(dy_center, i)) * entry(k1, i)
                     + (xr[i] - entry(x_center, i)) * entry(k2, i) + entry(comp, i))
        for i in range(head, body, lanes):
            stream_grad_input(dx2, n, j0 + i, dy2, x2, dy_center, k1, x_center, k2, comp, i)
        for i in range(body, W):
            dr[i] = ((gr[i] - entry(dy_center, i)) * entry(k1, i)
                     + (xr[i] - entry(x_center, i)) * entry(k2, i) + entry(comp, i))
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
# Per-column vectors (``*_cols``) have length C * S ("rows"); per-channel ones
# length C ("planes" tiles read entry c).

@jit()
def moments_pass_tile(plan, tile, x2, C, S, shift_cols, shift, s1, s2):
    slot, c, n0, n1, j0, j1 = tile_extent(plan, tile, x2.shape[0], C, S)
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
def grad_sums_pass_tile(plan, tile, dy2, x2, C, S, center_cols, center, s_dy, s_dyx):
    slot, c, n0, n1, j0, j1 = tile_extent(plan, tile, x2.shape[0], C, S)
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
def affine_pass_tile(plan, tile, x2, y2, C, S, center, scale, offset, stream):
    """Coefficients are per column ("rows") or per channel ("planes")."""
    slot, c, n0, n1, j0, j1 = tile_extent(plan, tile, x2.shape[0], C, S)
    if c < 0:
        affine_tile(x2, y2, n0, n1, j0, j1, center[j0:j1], scale[j0:j1], offset[j0:j1],
                     stream)
    else:
        affine_tile(x2, y2, n0, n1, j0, j1, center[c], scale[c], offset[c], stream)


@jit()
def grad_input_pass_tile(plan, tile, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2, comp,
                          stream):
    slot, c, n0, n1, j0, j1 = tile_extent(plan, tile, x2.shape[0], C, S)
    if c < 0:
        grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center[j0:j1], k1[j0:j1],
                         x_center[j0:j1], k2[j0:j1], comp[j0:j1], stream)
    else:
        grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center[c], k1[c],
                         x_center[c], k2[c], comp[c], stream)


@jit()
def eval_grad_pass_tile(plan, tile, dy2, x2, dx2, C, S, k1, need_sums,
                         center_cols, center, s_dy, s_dyx):
    """Evaluation backward: dx = dy * k1, and the sums when need_sums."""
    slot, c, n0, n1, j0, j1 = tile_extent(plan, tile, x2.shape[0], C, S)
    if c < 0:
        _scaled_grad_tile(dy2, dx2, n0, n1, j0, j1, k1[j0:j1])
    else:
        _scaled_grad_tile(dy2, dx2, n0, n1, j0, j1, np.full(j1 - j0, k1[c]))
    # The tile was just read: the sums find it in cache.
    if need_sums:
        grad_sums_pass_tile(plan, tile, dy2, x2, C, S, center_cols, center, s_dy, s_dyx)
