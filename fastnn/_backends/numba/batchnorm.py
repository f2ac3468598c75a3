"""Batch normalization, the Numba kernels: two passes forward, two backward.

Shapes (the backend contract): x, y, dy, dx are C-contiguous (N, C, S), S
the product of the spatial dimensions (1 for an (N, C) input); statistics
are per channel over n = N * S values.  Every kernel works on the 2-D view
x2 = x.reshape(N, C * S), whose column j belongs to channel j // S.  The
formulas are those of the NumPy reference (``fastnn/_backends/numpy/
batchnorm.py``); this file and its two helpers explain the tricks:

- ``batchnorm.py`` (this file): the entry points, the decisions they make
  from the input and the machine (threads, channel at a time, streaming
  stores), and the drivers that run the passes;
- ``_batchnorm_tiles.py``: how the work is cut into tiles and what each pass
  does on one tile;
- ``_batchnorm_coefficients.py``: between the passes, the partial sums
  combined into statistics and per-channel coefficients.

Forward, training (x read twice, y written once):
  1. moments pass: shifted sums sum(x - shift) and sum((x - shift)^2), with
     shift[c] = x[0, c, 0] one value of the channel, so they do not cancel
     the way E[x^2] - E[x]^2 does.  Runs of 8 rows are summed in x's dtype,
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
     stored).  dbias = sum(dy), dweight = invstd * sum(dy * (x - mean)).
  2. dx = (dy - mdy) * k1 + (x - mean) * k2 + comp, with k1 = weight * invstd,
     k2 = -k1 * invstd^2 * sum(dy * (x - mean)) / n, mdy = sum(dy) / n
     rounded to x's dtype and comp the compensation of that rounding.
Backward, evaluation: one pass, dx = dy * k1, with the two sums taken from
the same tile while it is in cache when dweight and dbias are wanted.

Decided per call, from the shape and the running machine's caches
(``fastnn/_machine.py``), never from constants tuned on one machine:
- channel at a time ("planes" layout, training): one thread runs both
  passes of a channel back to back, so the second pass reads the channel
  from cache and x (dy and x) leave memory once, not twice.  Used when the
  channel's re-read data fits in an eighth of the last-level cache (a share
  per thread that stays resident while the other threads stream theirs).
- streaming stores (_intrinsics.py) for y, and dx in training, when the
  arrays the pass touches are larger than the last-level cache: then every
  plain store would first read its line from memory; below that size the
  output stays in cache for the next layer and plain stores win.
The same tiles and the same order of additions run in every mode, so the
results are the same bits whatever is decided (tests/test_backends.py), and
for every thread count (tests/test_threads.py).  The measurements behind
these choices are in docs/PERFORMANCE.md.

Test: the conformance suite (tests/, every backend).  Bench:
``python -m fastnn bench --kernels batchnorm``.
"""

from numba import prange

from ... import _machine
from ._batchnorm_coefficients import (
    affine_coefficients,
    batch_statistics,
    channel_affine,
    channel_grad_coefficients,
    channel_shifts,
    channel_statistics,
    grad_input_coefficients,
    grad_scale,
    partial_buffers,
    per_column,
    running_statistics,
    weight_grads,
)
from ._batchnorm_tiles import (
    PLANE_MIN_S,
    TILE_ELEMENTS,
    affine_pass_tile,
    affine_tile,
    eval_grad_pass_tile,
    grad_input_pass_tile,
    grad_input_tile,
    grad_sums_pass_tile,
    moments_pass_tile,
    plan_tiles,
    tile_extent,
)
from ._jit import jit, serial_and_parallel, use_parallel

# Channel at a time needs this many channels for the threads to share, and
# in the forward a channel of at least this many bytes (it saves one read of
# three there, and on small channels the pass-by-pass passes find the data in
# cache anyway).
_MIN_CHANNELS = 8
_FORWARD_MIN_CHANNEL_BYTES = 128 << 10


# From the running machine's last-level cache, read once at import: the
# re-read bytes of one channel that channel at a time may keep in cache, and
# the bytes a pass touches from which its output is streamed.
_CHANNEL_CACHE_BYTES = _machine.caches().last_level // 8
_STREAM_MIN_BYTES = _machine.caches().last_level + 1


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
        moments_pass_tile(plan, slot * C + c, x2, C, S, shift, shift, s1, s2)
    sum1, sum2 = _channel_totals(s1, s2, c)
    mean = channel_statistics(c, sum1, sum2, N * S, shift[c], running_mean, running_var,
                               momentum, eps, invstd_out)
    center, scale, offset = channel_affine(c, mean, invstd_out[c], weight, bias, mean_out)
    for slot in range(nslots):
        _, _, n0, n1, j0, j1 = tile_extent(plan, slot * C + c, N, C, S)
        affine_tile(x2, y2, n0, n1, j0, j1, center, scale, offset, stream)


@jit()
def _channel_backward(plan, c, dy2, x2, dx2, C, S, weight, mean, invstd, s_dy, s_dyx,
                      stream, dweight_out, dbias_out):
    """Training backward of channel c: the two sums, coefficients, then dx."""
    N = x2.shape[0]
    nslots = plan[5]
    for slot in range(nslots):
        grad_sums_pass_tile(plan, slot * C + c, dy2, x2, C, S, mean, mean, s_dy, s_dyx)
    sum_dy, sum_dyx = _channel_totals(s_dy, s_dyx, c)
    dy_center, k1, k2, comp = channel_grad_coefficients(c, N * S, sum_dy, sum_dyx, weight,
                                                      invstd, dweight_out, dbias_out)
    for slot in range(nslots):
        _, _, n0, n1, j0, j1 = tile_extent(plan, slot * C + c, N, C, S)
        grad_input_tile(dy2, x2, dx2, n0, n1, j0, j1, dy_center, k1, mean[c], k2, comp, stream)


# ----------------------------------------------------------------------------
# Drivers: one source each, built twice by serial_and_parallel (in the serial
# build prange is range), so both builds run the very same tiles.

def _forward(x2, C, weight, bias, running_mean, running_var, training,
             momentum, eps, by_channel, stream, y2, mean_out, invstd_out):
    S = x2.shape[1] // C
    plan = plan_tiles(x2.shape[0], C, S)
    if training:
        shift = channel_shifts(x2, C, S)
        s1, s2 = partial_buffers(plan, C, S)
        if by_channel:
            for c in prange(C):
                _channel_forward(plan, c, x2, y2, C, S, shift, s1, s2, weight, bias,
                                 running_mean, running_var, momentum, eps, stream,
                                 mean_out, invstd_out)
            return
        shift_cols = per_column(shift, plan[0], S)
        for tile in prange(plan[6]):
            moments_pass_tile(plan, tile, x2, C, S, shift_cols, shift, s1, s2)
        mean = batch_statistics(plan, x2.shape[0], C, S, shift, s1, s2, running_mean,
                                 running_var, momentum, eps, invstd_out)
    else:
        mean = running_statistics(running_mean, running_var, eps, invstd_out)
    center, scale, offset = affine_coefficients(plan, S, mean, invstd_out, weight, bias,
                                                 mean_out)
    for tile in prange(plan[6]):
        affine_pass_tile(plan, tile, x2, y2, C, S, center, scale, offset, stream)


def _backward(dy2, x2, C, weight, mean, invstd, training, by_channel, stream, dx2,
              dweight_out, dbias_out):
    S = x2.shape[1] // C
    plan = plan_tiles(x2.shape[0], C, S)
    s_dy, s_dyx = partial_buffers(plan, C, S)
    if training and by_channel:
        for c in prange(C):
            _channel_backward(plan, c, dy2, x2, dx2, C, S, weight, mean, invstd, s_dy,
                              s_dyx, stream, dweight_out, dbias_out)
        return
    mean_cols = per_column(mean, plan[0], S)
    if training:
        for tile in prange(plan[6]):
            grad_sums_pass_tile(plan, tile, dy2, x2, C, S, mean_cols, mean, s_dy, s_dyx)
        dy_center, k1, x_center, k2, comp = grad_input_coefficients(
            plan, x2.shape[0], C, S, s_dy, s_dyx, weight, mean, invstd, dweight_out, dbias_out)
        for tile in prange(plan[6]):
            grad_input_pass_tile(plan, tile, dy2, x2, dx2, C, S, dy_center, k1, x_center, k2,
                                 comp, stream)
    else:
        k1 = grad_scale(plan, S, weight, invstd)
        for tile in prange(plan[6]):
            eval_grad_pass_tile(plan, tile, dy2, x2, dx2, C, S, k1, weight.size > 0,
                                 mean_cols, mean, s_dy, s_dyx)
        if weight.size:
            weight_grads(plan, C, S, s_dy, s_dyx, invstd, dweight_out, dbias_out)


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
    if S < PLANE_MIN_S or C < _MIN_CHANNELS:
        return False
    channel_bytes = N * S * x.itemsize
    return channel_bytes >= min_bytes and arrays * channel_bytes <= _CHANNEL_CACHE_BYTES


def _streams(touched_bytes):
    """Write the output with streaming stores?  When the pass's arrays do not
    fit in the last-level cache, so reading each output line first is pure
    cost and keeping the output cached is impossible anyway."""
    return touched_bytes >= _STREAM_MIN_BYTES


def _parallel(n_elements):
    # Threads pay off only with two tiles or more to share.
    return n_elements > TILE_ELEMENTS and use_parallel(n_elements)


def batchnorm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps,
                      y, mean, invstd):
    N, C, S = x.shape
    by_channel = training and _by_channel(x, 1, _FORWARD_MIN_CHANNEL_BYTES)
    kernel = _forward_parallel if _parallel(x.size) else _forward_serial
    kernel(x.reshape(N, C * S), C, weight, bias, running_mean, running_var, training,
           momentum, eps, by_channel, _streams(x.nbytes + y.nbytes), y.reshape(N, C * S),
           mean, invstd)


def batchnorm_backward(dy, x, weight, mean, invstd, training, dx, dweight, dbias):
    N, C, S = x.shape
    kernel = _backward_parallel if _parallel(x.size) else _backward_serial
    kernel(dy.reshape(N, C * S), x.reshape(N, C * S), C, weight, mean, invstd, training,
           training and _by_channel(x, 2), training and _streams(3 * dx.nbytes),
           dx.reshape(N, C * S), dweight, dbias)
