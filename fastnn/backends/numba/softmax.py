"""Numba softmax, log-softmax and fused softmax-cross-entropy kernels.

Shapes: logits ``x[N, C]`` (N rows, C classes); ``target`` is ``int64[N]``
class indices (or ``ignore_index``) or floating ``[N, C]`` probabilities;
``weight[C]`` optional class weights.  softmax/log_softmax take any shape and
axis: the axis is moved last (a contiguous copy only when the result is not
already C-ordered) and every row goes through the same row kernel.

Per row, all while the row is in cache (the row is read from memory once):

    m   = max_c x[c]                      pass 1 (reads x)
    e_c = exp(x[c] - m)                   pass 2 (stored in the gradient row
    S   = sum_c e_c,  lse = log S                 or a per-block scratch row)
    logp_c = x[c] - m - lse
    loss   = (1-eps) * w[y] * -logp[y] + eps/C * sum_c w[c] * -logp[c]
    grad_c = g * (e_c * A / S - eps/C * w[c] - (1-eps) * w[y] * [c == y])
             with A = (1-eps) w[y] + eps/C * sum_c w[c]   pass 3 (in place)

and for probability targets (t' = (1-eps) t + eps/C, T = sum_c w[c] t'[c]):
loss = lse * T - sum_c w[c] t'[c] (x[c] - m), grad_c = g (e_c T / S - w[c] t'[c]);
a term whose w[c] t'[c] is 0 adds 0 even where x[c] = -inf (as xlogy).
g is grad_loss, divided by the mean's denominator (sum of w[y] over counted
rows for index targets, N for probabilities), which is computed from the
targets first - O(N) - so that gradients can be written in the same pass.
Nothing is saved between forward and backward: the backward recomputes m and
S from the logits, which costs the same pass over them as reading a saved
softmax would.  Forward-only writes no N x C array.

Numerics: exp only ever sees x - m <= 0, so ``vexp_nonpositive`` (see
_vexp.py) applies and -inf logits give e = 0 exactly; sums over a row (S and
the smoothing/target sums) and the per-row losses accumulate in float64 for
both dtypes; per-row losses are added in row order at the end, so the loss
is bitwise identical for every thread count (the serial variant and the
parallel one run the same row code).

Variants: ``*_serial`` and ``*_parallel`` (prange over fixed blocks of rows,
chosen by ``use_parallel``); in-place (gradient written over the logits) and
out-of-place exp loops, because LLVM's alias check would send an exactly
aliased pair to the scalar loop.

Test: the conformance suite (tests/) and /tmp/cehelper/check_softmax.py
(float64 NumPy formula and torch).  Bench: ``python -m fastnn bench
--kernels softmax_cross_entropy_with_grad`` and /tmp/cehelper/bench_ce.py.
"""

import math

import numba
import numpy as np
from numba import prange

from ._jit import jit, use_parallel
from ._vexp import vexp_nonpositive

# Rows are handed to threads in blocks of about this many elements; the
# block size depends on C only (never on the thread count), and each block
# owns one scratch row for the forward-only exp values.
_BLOCK_ELEMENTS = 1 << 15


# --- row kernels ---------------------------------------------------------
# Each takes 1-D C-contiguous rows.  Reductions use 8 independent
# accumulators: without fastmath LLVM may not reorder a single running sum or
# max, so one accumulator would be a scalar chain, while 8 are packed into
# one (float32) or two (float64) vector registers.

@jit()
def _row_max(x):
    """max(x) of a non-empty row (NaN entries are skipped, -inf kept)."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = x[0]
    n8 = n - n % 8
    for j in range(0, n8, 8):
        v = x[j]
        a0 = v if v > a0 else a0
        v = x[j + 1]
        a1 = v if v > a1 else a1
        v = x[j + 2]
        a2 = v if v > a2 else a2
        v = x[j + 3]
        a3 = v if v > a3 else a3
        v = x[j + 4]
        a4 = v if v > a4 else a4
        v = x[j + 5]
        a5 = v if v > a5 else a5
        v = x[j + 6]
        a6 = v if v > a6 else a6
        v = x[j + 7]
        a7 = v if v > a7 else a7
    for j in range(n8, n):
        v = x[j]
        a0 = v if v > a0 else a0
    a0 = a1 if a1 > a0 else a0
    a2 = a3 if a3 > a2 else a2
    a4 = a5 if a5 > a4 else a4
    a6 = a7 if a7 > a6 else a6
    a0 = a2 if a2 > a0 else a0
    a4 = a6 if a6 > a4 else a4
    return a4 if a4 > a0 else a0


@jit()
def _row_sum_f64(e):
    """sum(e) accumulated in float64, in a fixed order."""
    n = e.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += e[j]
        s1 += e[j + 1]
        s2 += e[j + 2]
        s3 += e[j + 3]
        s4 += e[j + 4]
        s5 += e[j + 5]
        s6 += e[j + 6]
        s7 += e[j + 7]
    for j in range(n8, n):
        s0 += e[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@jit()
def _row_exp_shifted(x, m, e):
    """e = exp(x - m), x and e distinct rows."""
    for j in range(x.shape[0]):
        e[j] = vexp_nonpositive(x[j] - m)


@jit()
def _row_exp_shifted_inplace(e, m):
    """e = exp(e - m) in place (one array, so LLVM needs no alias check)."""
    for j in range(e.shape[0]):
        e[j] = vexp_nonpositive(e[j] - m)


@jit()
def _row_weighted_shifted_sum(x, m, weight, has_weight):
    """sum_c w[c] (x[c] - m) in float64; a zero weight adds 0 even at -inf."""
    n = x.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    n4 = n - n % 4
    mf = np.float64(m)
    if has_weight:
        for j in range(0, n4, 4):
            w = weight[j]
            s0 += w * (x[j] - mf) if w != 0 else 0.0
            w = weight[j + 1]
            s1 += w * (x[j + 1] - mf) if w != 0 else 0.0
            w = weight[j + 2]
            s2 += w * (x[j + 2] - mf) if w != 0 else 0.0
            w = weight[j + 3]
            s3 += w * (x[j + 3] - mf) if w != 0 else 0.0
        for j in range(n4, n):
            w = weight[j]
            s0 += w * (x[j] - mf) if w != 0 else 0.0
    else:
        for j in range(0, n4, 4):
            s0 += x[j] - mf
            s1 += x[j + 1] - mf
            s2 += x[j + 2] - mf
            s3 += x[j + 3] - mf
        for j in range(n4, n):
            s0 += x[j] - mf
    return (s0 + s1) + (s2 + s3)


@jit()
def _row_target_sums(x, m, t, weight, has_weight, keep, spread):
    """(T, sum_c wt[c] (x[c] - m)) with wt = w * (keep * t + spread), float64.

    keep = 1 - label_smoothing, spread = label_smoothing / C.  A class with
    wt = 0 adds nothing, even where x is -inf (xlogy convention).
    """
    total = 0.0
    dot = 0.0
    mf = np.float64(m)
    for j in range(x.shape[0]):
        wt = keep * t[j] + spread
        if has_weight:
            wt *= weight[j]
        total += wt
        dot += wt * (x[j] - mf) if wt != 0 else 0.0
    return total, dot


@jit()
def _row_scale(e, scale):
    """e *= scale (in e's dtype)."""
    s = e.dtype.type(scale)
    for j in range(e.shape[0]):
        e[j] = e[j] * s


@jit()
def _row_scale_minus(e, scale, offset):
    """e = e * scale - offset."""
    s = e.dtype.type(scale)
    o = e.dtype.type(offset)
    for j in range(e.shape[0]):
        e[j] = e[j] * s - o


@jit()
def _row_scale_minus_weighted(e, scale, offset, weight):
    """e = e * scale - offset * weight."""
    s = e.dtype.type(scale)
    o = e.dtype.type(offset)
    for j in range(e.shape[0]):
        e[j] = e[j] * s - o * weight[j]


@jit()
def _row_scale_minus_target(e, scale, g, t, weight, has_weight, keep, spread):
    """e = e * scale - g * w * (keep * t + spread), the probability-target gradient."""
    s = e.dtype.type(scale)
    gk = e.dtype.type(g * keep)
    gs = e.dtype.type(g * spread)
    if has_weight:
        for j in range(e.shape[0]):
            e[j] = e[j] * s - (gk * t[j] + gs) * weight[j]
    else:
        for j in range(e.shape[0]):
            e[j] = e[j] * s - (gk * t[j] + gs)


@jit()
def _ce_index_row(x, y, weight, has_weight, weight_sum, eps, g, e, inplace, write_grad):
    """Loss (float64) of one row with class target y; gradient into e if asked.

    e is the gradient row (which may be x itself when inplace) or a scratch
    row; everything read from x is read before e is written.
    """
    C = x.shape[0]
    m = _row_max(x)
    x_y = np.float64(x[y])
    w_y = np.float64(weight[y]) if has_weight else 1.0
    smooth_sum = _row_weighted_shifted_sum(x, m, weight, has_weight) if eps != 0.0 else 0.0
    if inplace:
        _row_exp_shifted_inplace(e, m)
    else:
        _row_exp_shifted(x, m, e)
    S = _row_sum_f64(e)
    lse = math.log(S)
    mf = np.float64(m)
    keep = 1.0 - eps
    loss = keep * w_y * (lse - (x_y - mf))
    if eps != 0.0:
        loss += (eps / C) * (lse * weight_sum - smooth_sum)
    if write_grad:
        A = keep * w_y + (eps / C) * weight_sum
        e_y = np.float64(e[y])
        offset = g * (eps / C)
        if eps == 0.0:
            _row_scale(e, g * A / S)
        elif has_weight:
            _row_scale_minus_weighted(e, g * A / S, offset, weight)
        else:
            _row_scale_minus(e, g * A / S, offset)
        # The target entry in float64: A e_y / S - keep w_y is a difference
        # of two numbers near 1 when the prediction is confident.
        w_off = offset * np.float64(weight[y]) if has_weight else offset
        e[y] = g * ((A * e_y - keep * w_y * S) / S) - w_off
    return loss


@jit()
def _ce_prob_row(x, t, weight, has_weight, eps, g, e, inplace, write_grad):
    """Loss (float64) of one row with probability target t; gradient into e if asked."""
    C = x.shape[0]
    keep = 1.0 - eps
    spread = eps / C
    m = _row_max(x)
    T, dot = _row_target_sums(x, m, t, weight, has_weight, keep, spread)
    if inplace:
        _row_exp_shifted_inplace(e, m)
    else:
        _row_exp_shifted(x, m, e)
    S = _row_sum_f64(e)
    lse = math.log(S)
    if write_grad:
        _row_scale_minus_target(e, g * T / S, g, t, weight, has_weight, keep, spread)
    return lse * T - dot


@jit()
def _softmax_row(x, y, log):
    """y = softmax(x) or log_softmax(x) of one row (x and y distinct)."""
    m = _row_max(x)
    _row_exp_shifted(x, m, y)
    S = _row_sum_f64(y)
    if log:
        # (x - m) - lse rather than x - (m + lse): with large logits m + lse
        # would round lse away, and the top class would get log-prob 0.
        lse = x.dtype.type(math.log(S))
        for j in range(x.shape[0]):
            y[j] = (x[j] - m) - lse
    else:
        _row_scale(y, 1.0 / S)


# --- block loops: the same row code, serial or over threads -----------------

@jit()
def _rows_per_block(C):
    return max(1, _BLOCK_ELEMENTS // max(C, 1))


@jit()
def _ce_index_block(start, stop, logits, target, weight, has_weight, weight_sum,
                    ignore_index, eps, grad_scalar, grad_rows, use_grad_rows,
                    grad, write_grad, inplace, row_loss):
    C = logits.shape[1]
    scratch = np.empty(0 if write_grad else C, dtype=logits.dtype)
    for i in range(start, stop):
        y = target[i]
        if y == ignore_index:
            row_loss[i] = 0.0
            if write_grad:
                grad[i, :] = 0
            continue
        g = grad_rows[i] if use_grad_rows else grad_scalar
        e = grad[i] if write_grad else scratch
        row_loss[i] = _ce_index_row(logits[i], y, weight, has_weight, weight_sum,
                                    eps, g, e, inplace, write_grad)


@jit()
def _ce_prob_block(start, stop, logits, target, weight, has_weight, eps,
                   grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                   inplace, row_loss):
    C = logits.shape[1]
    scratch = np.empty(0 if write_grad else C, dtype=logits.dtype)
    for i in range(start, stop):
        g = grad_rows[i] if use_grad_rows else grad_scalar
        e = grad[i] if write_grad else scratch
        row_loss[i] = _ce_prob_row(logits[i], target[i], weight, has_weight, eps,
                                   g, e, inplace, write_grad)


@jit()
def _sum_in_order(values):
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i]
    return total


@jit()
def _ce_index_serial(logits, target, weight, has_weight, weight_sum, ignore_index,
                     eps, grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                     inplace, row_loss):
    _ce_index_block(0, logits.shape[0], logits, target, weight, has_weight,
                    weight_sum, ignore_index, eps, grad_scalar, grad_rows,
                    use_grad_rows, grad, write_grad, inplace, row_loss)
    return _sum_in_order(row_loss)


@jit(parallel=True)
def _ce_index_parallel(logits, target, weight, has_weight, weight_sum, ignore_index,
                       eps, grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                       inplace, row_loss):
    N = logits.shape[0]
    rows = _rows_per_block(logits.shape[1])
    for b in prange((N + rows - 1) // rows):
        _ce_index_block(b * rows, min(N, (b + 1) * rows), logits, target, weight,
                        has_weight, weight_sum, ignore_index, eps, grad_scalar,
                        grad_rows, use_grad_rows, grad, write_grad, inplace, row_loss)
    return _sum_in_order(row_loss)


@jit()
def _ce_prob_serial(logits, target, weight, has_weight, eps, grad_scalar, grad_rows,
                    use_grad_rows, grad, write_grad, inplace, row_loss):
    _ce_prob_block(0, logits.shape[0], logits, target, weight, has_weight, eps,
                   grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                   inplace, row_loss)
    return _sum_in_order(row_loss)


@jit(parallel=True)
def _ce_prob_parallel(logits, target, weight, has_weight, eps, grad_scalar, grad_rows,
                      use_grad_rows, grad, write_grad, inplace, row_loss):
    N = logits.shape[0]
    rows = _rows_per_block(logits.shape[1])
    for b in prange((N + rows - 1) // rows):
        _ce_prob_block(b * rows, min(N, (b + 1) * rows), logits, target, weight,
                       has_weight, eps, grad_scalar, grad_rows, use_grad_rows,
                       grad, write_grad, inplace, row_loss)
    return _sum_in_order(row_loss)


@jit()
def _softmax_serial(x, y, log):
    for i in range(x.shape[0]):
        _softmax_row(x[i], y[i], log)


@jit(parallel=True)
def _softmax_parallel(x, y, log):
    N = x.shape[0]
    rows = _rows_per_block(x.shape[1])
    for b in prange((N + rows - 1) // rows):
        for i in range(b * rows, min(N, (b + 1) * rows)):
            _softmax_row(x[i], y[i], log)


@jit()
def _index_denominator(target, weight, has_weight, ignore_index):
    """Sum of w[y] over rows whose target is not ignore_index (float64)."""
    total = 0.0
    for i in range(target.shape[0]):
        y = target[i]
        if y != ignore_index:
            total += np.float64(weight[y]) if has_weight else 1.0
    return total


# --- Python entry points (the backend contract) ------------------------------

_EMPTY_GRAD_ROWS = np.empty(0, dtype=np.float64)


def _softmax_any_axis(x, axis, log):
    moved = np.moveaxis(x, axis, -1)
    rows = np.ascontiguousarray(moved).reshape(-1, moved.shape[-1]) if moved.size else None
    y = np.empty(moved.shape, dtype=x.dtype)
    if rows is None or moved.shape[-1] == 0:
        return np.moveaxis(y, -1, axis)
    y_rows = y.reshape(rows.shape)
    kernel = _softmax_parallel if use_parallel(rows.size) else _softmax_serial
    kernel(rows, y_rows, log)
    return np.moveaxis(y, -1, axis)


def softmax(x, axis):
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    return _softmax_any_axis(x, axis, False)


def log_softmax(x, axis):
    """x - max - log(sum(exp(x - max))) along ``axis``."""
    return _softmax_any_axis(x, axis, True)


def _run(logits, target, weight, ignore_index, reduction, label_smoothing,
         grad_loss, grad, inplace):
    """Shared driver: returns (row_loss float64[N], total float, denominator)."""
    N, C = logits.shape
    dtype = logits.dtype
    has_weight = weight is not None
    weight_c = np.ascontiguousarray(weight) if has_weight else np.empty(0, dtype=dtype)
    index_target = target.ndim == 1
    if index_target:
        target_c = np.ascontiguousarray(target)
        if reduction == "mean":
            denominator = _index_denominator(target_c, weight_c, has_weight, ignore_index)
        else:
            denominator = 1.0
    else:
        target_c = np.ascontiguousarray(target)
        denominator = float(N) if reduction == "mean" else 1.0

    use_grad_rows = False
    grad_rows = _EMPTY_GRAD_ROWS
    grad_scalar = 1.0
    write_grad = grad is not None
    if write_grad:
        if reduction == "none":
            if grad_loss is not None:
                use_grad_rows = True
                grad_rows = np.ascontiguousarray(grad_loss, dtype=np.float64)
        else:
            g = 1.0 if grad_loss is None else float(grad_loss)
            # 0/0 with every target ignored gives nan, never used for a row.
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_scalar = float(np.float64(g) / np.float64(denominator)) \
                    if reduction == "mean" else g
    else:
        grad = np.empty((0, 0), dtype=dtype)

    row_loss = np.empty(N, dtype=np.float64)
    if C == 0:
        # No classes (every index target must then be ignored): zero loss.
        row_loss[:] = 0.0
        return row_loss, 0.0, denominator
    parallel = use_parallel(N * C)
    if index_target:
        kernel = _ce_index_parallel if parallel else _ce_index_serial
        weight_sum = float(np.sum(weight_c, dtype=np.float64)) if has_weight else float(C)
        total = kernel(logits, target_c, weight_c, has_weight, weight_sum,
                       ignore_index, float(label_smoothing), grad_scalar, grad_rows,
                       use_grad_rows, grad, write_grad, inplace, row_loss)
    else:
        kernel = _ce_prob_parallel if parallel else _ce_prob_serial
        total = kernel(logits, target_c, weight_c, has_weight, float(label_smoothing),
                       grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                       inplace, row_loss)
    return row_loss, total, denominator


def _reduce(row_loss, total, denominator, reduction, dtype):
    if reduction == "none":
        return row_loss.astype(dtype)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.float64(total) / np.float64(denominator), dtype=dtype)
    return np.asarray(total, dtype=dtype)


def softmax_cross_entropy(logits, target, weight, ignore_index, reduction,
                          label_smoothing):
    """Cross-entropy of softmax(logits) and target; no N x C array is written."""
    logits_c = np.ascontiguousarray(logits)
    row_loss, total, denominator = _run(logits_c, target, weight, ignore_index,
                                        reduction, label_smoothing, None, None, False)
    return _reduce(row_loss, total, denominator, reduction, logits.dtype)


def _gradient(logits, target, grad_loss, weight, ignore_index, reduction,
              label_smoothing, out):
    """Run the fused kernel writing the gradient into ``out`` (or a fresh array)."""
    if logits.flags.c_contiguous:
        source = logits
        if out is None:
            grad = np.empty(logits.shape, dtype=logits.dtype)
            inplace = False
        elif out.flags.c_contiguous and (out is logits or out.ctypes.data == logits.ctypes.data):
            grad, inplace = out, True
        elif out.flags.c_contiguous and not np.may_share_memory(out, logits):
            grad, inplace = out, False
        else:
            grad, inplace = np.empty(logits.shape, dtype=logits.dtype), False
    else:
        # The kernel needs C-ordered rows: work on a private copy and write
        # the gradient over it.
        source = np.ascontiguousarray(logits)
        grad, inplace = source, True
    row_loss, total, denominator = _run(source, target, weight, ignore_index,
                                        reduction, label_smoothing, grad_loss,
                                        grad, inplace)
    if out is None:
        out = grad
    elif grad is not out:
        out[...] = grad
    return out, row_loss, total, denominator


def softmax_cross_entropy_backward(logits, target, grad_loss, weight, ignore_index,
                                   reduction, label_smoothing):
    """d(loss)/d(logits) times grad_loss (a float, or [N] for "none")."""
    if reduction == "none":
        grad_loss = np.asarray(grad_loss)
    dlogits, _, _, _ = _gradient(logits, target, grad_loss, weight, ignore_index,
                                 reduction, label_smoothing, None)
    return dlogits


def softmax_cross_entropy_with_grad(logits, target, weight, ignore_index, reduction,
                                    label_smoothing, out):
    """(loss, gradient of loss.sum()) in one pass; the gradient goes into ``out``."""
    dtype = logits.dtype
    dlogits, row_loss, total, denominator = _gradient(
        logits, target, None, weight, ignore_index, reduction, label_smoothing, out)
    return _reduce(row_loss, total, denominator, reduction, dtype), dlogits
