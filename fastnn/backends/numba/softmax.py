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
from ._vexp import maximum, vexp_nonpositive

# Rows are handed to threads in blocks of about this many elements; the
# block size depends on C only (never on the thread count), and each block
# owns one scratch row for the forward-only exp values.
_BLOCK_ELEMENTS = 1 << 15


# --- row helpers -------------------------------------------------------------
# A helper takes a 2-D C-contiguous array and a row index, never a row slice:
# a slice passed to a function that LLVM does not inline costs an atomic
# increment and decrement of the array's reference count per call, and with
# two threads those atomics fight over one cache line.  The helpers are small
# enough for LLVM to inline, and the exp loops are written out in the block
# functions below for the same reason; indices X[i, j] with i and j from
# range() are provably non-negative, so no wraparound test blocks the
# vectorizer.
#
# Numba runs LLVM without its SLP vectorizer, so only loops vectorize, and a
# floating-point running sum only when LLVM may reorder it: the row sums are
# compiled with fastmath={"reassoc"} and nothing else (no nnan/ninf, so -inf
# and NaN keep their meaning; no contraction).  The order LLVM picks is fixed
# in the compiled code, and the same row code runs in the serial and the
# parallel kernels, so results are bitwise identical across thread counts
# (tested).  The max uses llvm.maximum, which vectorizes with no flag at all.

@jit()
def _row_max(X, i):
    """max of row i (NaN if the row holds a NaN); the row is not empty."""
    m = X[i, 0]
    for j in range(X.shape[1]):
        m = maximum(m, X[i, j])
    return m


@jit(fastmath={"reassoc"})
def _row_sum_f64(E, i):
    """sum of row i accumulated in float64."""
    s = 0.0
    for j in range(E.shape[1]):
        s += E[i, j]
    return s


@jit(fastmath={"reassoc"})
def _row_shifted_sum(X, i, m):
    """sum_c (X[i, c] - m) in float64."""
    mf = np.float64(m)
    s = 0.0
    for j in range(X.shape[1]):
        s += X[i, j] - mf
    return s


@jit(fastmath={"reassoc"})
def _row_weighted_shifted_sum(X, i, m, weight):
    """sum_c w[c] (X[i, c] - m) in float64; a zero weight adds 0 even at -inf."""
    mf = np.float64(m)
    s = 0.0
    for j in range(X.shape[1]):
        w = np.float64(weight[j])
        s += w * (X[i, j] - mf) if w != 0.0 else 0.0
    return s


@jit(fastmath={"reassoc"})
def _row_target_sums(X, i, m, T, weight, keep, spread):
    """(sum_c wt[c], sum_c wt[c] (X[i, c] - m)) in float64, wt = w (keep T[i] + spread).

    keep = 1 - label_smoothing, spread = label_smoothing / C; weight is
    all ones when the call has none.  A class with wt = 0 adds nothing, even
    where X is -inf (the xlogy convention).
    """
    mf = np.float64(m)
    total = 0.0
    dot = 0.0
    for j in range(X.shape[1]):
        wt = np.float64(weight[j]) * (keep * T[i, j] + spread)
        total += wt
        dot += wt * (X[i, j] - mf) if wt != 0.0 else 0.0
    return total, dot


@jit()
def _row_exp_shifted(X, i, m, E, k):
    """E[k] = exp(X[i] - m), X and E distinct arrays."""
    for j in range(X.shape[1]):
        E[k, j] = vexp_nonpositive(X[i, j] - m)


@jit()
def _row_exp_shifted_inplace(E, i, m):
    """E[i] = exp(E[i] - m): one array, so LLVM needs no runtime alias check
    (an exactly aliased pair would fail it and run the scalar loop)."""
    for j in range(E.shape[1]):
        E[i, j] = vexp_nonpositive(E[i, j] - m)


@jit()
def _row_scale(E, i, scale):
    """E[i] *= scale (in E's dtype)."""
    s = E.dtype.type(scale)
    for j in range(E.shape[1]):
        E[i, j] = E[i, j] * s


@jit()
def _row_scale_minus(E, i, scale, offset):
    """E[i] = E[i] * scale - offset."""
    s = E.dtype.type(scale)
    o = E.dtype.type(offset)
    for j in range(E.shape[1]):
        E[i, j] = E[i, j] * s - o


@jit()
def _row_scale_minus_weighted(E, i, scale, offset, weight):
    """E[i] = E[i] * scale - offset * weight."""
    s = E.dtype.type(scale)
    o = E.dtype.type(offset)
    for j in range(E.shape[1]):
        E[i, j] = E[i, j] * s - o * weight[j]


@jit()
def _row_scale_minus_target(E, i, scale, g, T, weight, keep, spread):
    """E[i] = E[i] * scale - g * w * (keep * T[i] + spread)."""
    s = E.dtype.type(scale)
    gk = E.dtype.type(g * keep)
    gs = E.dtype.type(g * spread)
    for j in range(E.shape[1]):
        E[i, j] = E[i, j] * s - (gk * T[i, j] + gs) * weight[j]


# --- block functions: rows start..stop, called once per block ---------------

@jit()
def _ce_index_block(start, stop, logits, target, weight, has_weight, weight_sum,
                    ignore_index, eps, grad_scalar, grad_rows, use_grad_rows,
                    grad, write_grad, inplace, row_loss):
    """Per-row losses (float64) and, if write_grad, gradient rows; class targets.

    grad may be logits itself (inplace): everything read from a logits row is
    read before its gradient row is written.
    """
    C = logits.shape[1]
    scratch = np.empty((1, 0 if write_grad else C), dtype=logits.dtype)
    keep = 1.0 - eps
    spread = eps / C
    for i in range(start, stop):
        y = target[i]
        if y == ignore_index:
            row_loss[i] = 0.0
            if write_grad:
                for j in range(C):
                    grad[i, j] = 0
            continue
        m = _row_max(logits, i)
        x_y = np.float64(logits[i, y])
        w_y = np.float64(weight[y]) if has_weight else 1.0
        smooth_sum = 0.0
        if eps != 0.0:
            if has_weight:
                smooth_sum = _row_weighted_shifted_sum(logits, i, m, weight)
            else:
                smooth_sum = _row_shifted_sum(logits, i, m)
        if not write_grad:
            _row_exp_shifted(logits, i, m, scratch, 0)
            S = _row_sum_f64(scratch, 0)
        elif inplace:
            _row_exp_shifted_inplace(grad, i, m)
            S = _row_sum_f64(grad, i)
        else:
            _row_exp_shifted(logits, i, m, grad, i)
            S = _row_sum_f64(grad, i)
        lse = math.log(S)
        loss = keep * w_y * (lse - (x_y - np.float64(m)))
        if eps != 0.0:
            loss += spread * (lse * weight_sum - smooth_sum)
        row_loss[i] = loss
        if write_grad:
            g = grad_rows[i] if use_grad_rows else grad_scalar
            A = keep * w_y + spread * weight_sum
            e_y = np.float64(grad[i, y])
            offset = g * spread
            if eps == 0.0:
                _row_scale(grad, i, g * A / S)
            elif has_weight:
                _row_scale_minus_weighted(grad, i, g * A / S, offset, weight)
            else:
                _row_scale_minus(grad, i, g * A / S, offset)
            # The target entry in float64: A e_y / S - keep w_y is a
            # difference of two numbers near 1 when the prediction is
            # confident, too close for float32.
            w_offset = offset * w_y if has_weight else offset
            grad[i, y] = g * ((A * e_y - keep * w_y * S) / S) - w_offset


@jit()
def _ce_prob_block(start, stop, logits, target, weight, eps,
                   grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                   inplace, row_loss):
    """Per-row losses and gradient rows for probability targets.

    weight is all ones when the call has no class weights: multiplying by 1
    is exact, and one loop per helper keeps them free of branches.
    """
    C = logits.shape[1]
    scratch = np.empty((1, 0 if write_grad else C), dtype=logits.dtype)
    keep = 1.0 - eps
    spread = eps / C
    for i in range(start, stop):
        m = _row_max(logits, i)
        total, dot = _row_target_sums(logits, i, m, target, weight, keep, spread)
        if not write_grad:
            _row_exp_shifted(logits, i, m, scratch, 0)
            S = _row_sum_f64(scratch, 0)
        elif inplace:
            _row_exp_shifted_inplace(grad, i, m)
            S = _row_sum_f64(grad, i)
        else:
            _row_exp_shifted(logits, i, m, grad, i)
            S = _row_sum_f64(grad, i)
        lse = math.log(S)
        row_loss[i] = lse * total - dot
        if write_grad:
            g = grad_rows[i] if use_grad_rows else grad_scalar
            _row_scale_minus_target(grad, i, g * total / S, g, target, weight,
                                    keep, spread)


@jit()
def _softmax_block(start, stop, x, y, log):
    """Rows start..stop of y = softmax(x) or log_softmax(x) (x, y distinct)."""
    for i in range(start, stop):
        m = _row_max(x, i)
        _row_exp_shifted(x, i, m, y, i)
        S = _row_sum_f64(y, i)
        if log:
            # (x - m) - lse rather than x - (m + lse): with large logits
            # m + lse would round lse away and the top class would get 0.
            lse = x.dtype.type(math.log(S))
            for j in range(x.shape[1]):
                y[i, j] = (x[i, j] - m) - lse
        else:
            _row_scale(y, i, 1.0 / S)


# --- serial and parallel drivers ------------------------------------------------

@jit()
def _rows_per_block(C):
    return max(1, _BLOCK_ELEMENTS // max(C, 1))


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
def _ce_prob_serial(logits, target, weight, eps, grad_scalar, grad_rows,
                    use_grad_rows, grad, write_grad, inplace, row_loss):
    _ce_prob_block(0, logits.shape[0], logits, target, weight, eps,
                   grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                   inplace, row_loss)
    return _sum_in_order(row_loss)


@jit(parallel=True)
def _ce_prob_parallel(logits, target, weight, eps, grad_scalar, grad_rows,
                      use_grad_rows, grad, write_grad, inplace, row_loss):
    N = logits.shape[0]
    rows = _rows_per_block(logits.shape[1])
    for b in prange((N + rows - 1) // rows):
        _ce_prob_block(b * rows, min(N, (b + 1) * rows), logits, target, weight,
                       eps, grad_scalar, grad_rows, use_grad_rows,
                       grad, write_grad, inplace, row_loss)
    return _sum_in_order(row_loss)


@jit()
def _softmax_serial(x, y, log):
    _softmax_block(0, x.shape[0], x, y, log)


@jit(parallel=True)
def _softmax_parallel(x, y, log):
    N = x.shape[0]
    rows = _rows_per_block(x.shape[1])
    for b in prange((N + rows - 1) // rows):
        _softmax_block(b * rows, min(N, (b + 1) * rows), x, y, log)


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
        weight_or_ones = weight_c if has_weight else np.ones(C, dtype=dtype)
        total = kernel(logits, target_c, weight_or_ones, float(label_smoothing),
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
