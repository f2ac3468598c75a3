"""Numba softmax, log-softmax and fused softmax-cross-entropy kernels.

Dimension letters: N rows (the batch), C classes.  ``logits[N, C]``;
``target`` is ``int64[N]`` class indices (or ``ignore_index``) or floating
``[N, C]`` probabilities; ``weight[C]`` optional class weights; eps is the
label smoothing.  softmax/log_softmax take any shape and axis: the axis is
moved last (a contiguous copy only when that view is not C-ordered) and every
row goes through the same row code.

Per row, while the row is in cache (so each row is read from memory once):

    pass 1  m = max_c x[c]                       (reads the row)
    pass 2  e_c = exp(x[c] - m), S = sum_c e_c   (e goes to the gradient row;
            lse = log S                           loss only: e is summed, not kept)
    loss = (1-eps) w[y] (lse - (x[y] - m)) + eps/C sum_c w[c] (lse - (x[c] - m))
    pass 3  grad_c = g (A e_c / S - eps/C w[c] - (1-eps) w[y] [c == y]),
            A = (1-eps) w[y] + eps/C sum_c w[c]  (in place over e)

For probability targets, with wt[c] = w[c] ((1-eps) t[c] + eps/C) and
T = sum_c wt[c]: loss = lse T - sum_c wt[c] (x[c] - m) and
grad_c = g (T e_c / S - wt[c]); a class with wt = 0 adds 0 even where x is
-inf (the xlogy limit).  g is grad_loss over the mean's denominator - the sum
of w[y] over rows not ignored (index targets) or N (probabilities) - which
is computed from the targets before any row (O(N)), so gradients are written
in the same sweep.  The gradient entry at the target is formed in float64
(A e_y - (1-eps) w[y] S) / S: for a confident row it is a difference of
numbers near 1.

What forward saves: nothing.  The backward recomputes m and S from the
logits, which costs the same one read as loading a saved softmax would, and
``softmax_cross_entropy_with_grad`` gives both in one sweep.  The loss-only
call writes no N x C array, nor any row.

Numerics: exp only sees x - m <= 0, so ``vexp_nonpositive`` (_vexp.py, a
branch-free exp that LLVM vectorizes) applies; -inf logits give e = 0
exactly; any finite logits (+-1e30) are safe.  S, the smoothing and target
sums and the per-row losses are float64 for both dtypes (the loss-only S
adds runs of 256 terms in the logits' dtype first); per-row losses are
added in row order after the rows are done, so the loss is bitwise the same
for any thread count (the serial and parallel variants run the same row code).

Variants: ``*_serial`` below ``use_parallel``'s size threshold, otherwise
``*_parallel`` (prange over blocks of about _BLOCK_ELEMENTS elements, a size
fixed by C and never by the thread count); the exp pass in place (gradient
written over the logits, ``out=logits``) or from logits to a distinct array,
because LLVM's runtime alias check would send an exactly aliased pair to the
scalar loop.  The gradient is written with plain stores: forming each row in
a scratch row and streaming it out (as batch norm streams its outputs)
measured slower (docs/PERFORMANCE.md, "Softmax cross-entropy").

Test: ``pytest tests -k "numba and (softmax or entropy)"`` (the conformance
suite: float64 formulas, finite differences, PyTorch, strided and Fortran
logits, -inf and +-1e4 logits, bitwise equality across thread counts).
Bench: ``python -m fastnn bench`` (the cross-entropy and softmax rows).
"""

import math

import numpy as np
from numba import prange

from ._jit import entry, jit, use_parallel
from ._intrinsics import maximum, prefetch
from ._vexp import vexp_nonpositive

# Rows are handed to threads in blocks of about this many elements; the
# block size depends on C only (never on the thread count).
_BLOCK_ELEMENTS = 1 << 15
# Terms of a row's exp sum added in the row's dtype before going to float64.
_EXP_RUN = 256


# --- row helpers ---------------------------------------------------------------
# A helper takes a 2-D C-contiguous array and a row index, never a row slice,
# and has no branch around its loop.  A row slice handed to a function LLVM
# does not inline costs an atomic increment and decrement of the array's
# reference count per call - per row - and with two threads those atomics
# fight over one cache line; Numba prunes the reference counting of
# branch-free helpers like these.  Indices X[i, j] with i and j from range()
# are provably non-negative, so no wraparound test blocks the vectorizer.
#
# Numba runs LLVM without its SLP vectorizer, so only loops vectorize, and a
# floating-point running sum only when LLVM may reorder it: the row sums are
# compiled with fastmath={"reassoc"} and no other flag (no nnan/ninf: -inf and
# NaN keep their meaning; no contraction).  The order LLVM picks is fixed in
# the compiled code and the same row code runs in the serial and parallel
# kernels, so results stay bitwise identical across thread counts (tested).
# The max uses llvm.maximum, which LLVM vectorizes without any flag.

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
def _prefetch_part(X, i, j0, j1):
    """Prefetch X[i, j0:j1], one request per 64-byte cache line."""
    for j in range(j0, j1, 64 // X.itemsize):
        prefetch(X, i, j)


@jit(fastmath={"reassoc"})
def _row_exp_total(X, i, m, ahead):
    """sum_c exp(X[i, c] - m), nothing stored: runs of _EXP_RUN terms summed
    in X's dtype (full-width vectors), their totals in float64.

    Each run prefetches the same stretch of row ``ahead`` (the next row,
    most often the same thread's next, as threads take consecutive blocks;
    i itself for the last row): the exp is compute-bound on a row
    already in cache, and without the prefetch memory would idle during it
    and the core during the next row's first read.  Only here: where a
    gradient row is written too, the prefetched row crowds the two rows out
    of L2 (both measured: docs/PERFORMANCE.md).

    A run of float32 terms in [0, 1] summed over the vector lanes rounds at
    most about (_EXP_RUN / 32) * 6e-8 relative: far below the loss's
    tolerance, and one loop instead of an exp pass and a float64 sum pass.
    """
    C = X.shape[1]
    total = 0.0
    zero = X.dtype.type(0)
    for j0 in range(0, C, _EXP_RUN):
        j1 = min(C, j0 + _EXP_RUN)
        _prefetch_part(X, ahead, j0, j1)
        run = zero
        for j in range(j0, j1):
            run += vexp_nonpositive(X[i, j] - m)
        total += run
    return total


@jit()
def _row_exp_sum(logits, i, m, grad, write_grad, inplace, ahead):
    """S = sum_c exp(logits[i, c] - m) in float64, the exp values kept where
    the gradient needs them: grad[i] (over the logits when ``inplace``);
    none kept when no gradient is written (row ``ahead`` is then prefetched)."""
    if not write_grad:
        return _row_exp_total(logits, i, m, ahead)
    if inplace:
        _row_exp_shifted_inplace(grad, i, m)
    else:
        _row_exp_shifted(logits, i, m, grad, i)
    return _row_sum_f64(grad, i)


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
        S = _row_exp_sum(logits, i, m, grad, write_grad, inplace, min(i + 1, logits.shape[0] - 1))
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
            grad[i, y] = g * ((A * e_y - keep * w_y * S) / S) - offset * w_y


@jit()
def _ce_prob_block(start, stop, logits, target, weight, eps,
                   grad_scalar, grad_rows, use_grad_rows, grad, write_grad,
                   inplace, row_loss):
    """Per-row losses and gradient rows for probability targets.

    weight is all ones when the call has no class weights: multiplying by 1
    is exact, and one loop per helper keeps them free of branches.
    """
    C = logits.shape[1]
    keep = 1.0 - eps
    spread = eps / C
    for i in range(start, stop):
        m = _row_max(logits, i)
        total, dot = _row_target_sums(logits, i, m, target, weight, keep, spread)
        S = _row_exp_sum(logits, i, m, grad, write_grad, inplace, min(i + 1, logits.shape[0] - 1))
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


# Entry-point signatures (see _jit.entry): logits, target, weight, options,
# grad_rows, gradient and the float64 per-row losses.
_CE_INDEX = ("float64(F[:, ::1], int64[::1], F[::1], boolean, int64, float64, int64, "
             "float64, float64[::1], boolean, F[:, ::1], boolean, boolean, float64[::1])")
_CE_PROB = ("float64(F[:, ::1], F[:, ::1], F[::1], float64, int64, float64, float64[::1], "
            "boolean, F[:, ::1], boolean, boolean, float64[::1])")

# Reduction codes passed to the jitted drivers.
_NONE, _SUM, _MEAN = 0, 1, 2
_REDUCTION_CODES = {"none": _NONE, "sum": _SUM, "mean": _MEAN}


@jit()
def _index_setup(target, weight, has_weight, ignore_index, C, reduction,
                 grad_loss):
    """(sum_c w[c], denominator of the mean, gradient scale of every row).

    O(N + C) and done before any row, so that the rows can write their
    gradients at once.  The mean divides by the sum of w[y] over the rows
    not ignored; with every row ignored that is 0/0 = nan, as in PyTorch
    (error_model="numpy": no exception, no warning).
    """
    weight_sum = 0.0
    if has_weight:
        for c in range(C):
            weight_sum += weight[c]
    else:
        weight_sum = np.float64(C)
    denominator = 1.0
    if reduction == _MEAN:
        denominator = 0.0
        for i in range(target.shape[0]):
            y = target[i]
            if y != ignore_index:
                denominator += np.float64(weight[y]) if has_weight else 1.0
    return weight_sum, denominator, grad_loss / denominator


@jit()
def _reduce_in_order(row_loss, reduction, denominator):
    """Sum (or mean) of the per-row losses, added in row order."""
    total = 0.0
    if reduction == _NONE:
        return total
    for i in range(row_loss.shape[0]):
        total += row_loss[i]
    return total / denominator


@entry(_CE_INDEX)
def _ce_index_serial(logits, target, weight, has_weight, ignore_index, eps, reduction,
                     grad_loss, grad_rows, use_grad_rows, grad, write_grad, inplace,
                     row_loss):
    weight_sum, denominator, grad_scalar = _index_setup(
        target, weight, has_weight, ignore_index, logits.shape[1], reduction, grad_loss)
    _ce_index_block(0, logits.shape[0], logits, target, weight, has_weight,
                    weight_sum, ignore_index, eps, grad_scalar, grad_rows,
                    use_grad_rows, grad, write_grad, inplace, row_loss)
    return _reduce_in_order(row_loss, reduction, denominator)


@entry(_CE_INDEX, parallel=True)
def _ce_index_parallel(logits, target, weight, has_weight, ignore_index, eps, reduction,
                       grad_loss, grad_rows, use_grad_rows, grad, write_grad, inplace,
                       row_loss):
    weight_sum, denominator, grad_scalar = _index_setup(
        target, weight, has_weight, ignore_index, logits.shape[1], reduction, grad_loss)
    N = logits.shape[0]
    rows = _rows_per_block(logits.shape[1])
    for b in prange((N + rows - 1) // rows):
        _ce_index_block(b * rows, min(N, (b + 1) * rows), logits, target, weight,
                        has_weight, weight_sum, ignore_index, eps, grad_scalar,
                        grad_rows, use_grad_rows, grad, write_grad, inplace, row_loss)
    return _reduce_in_order(row_loss, reduction, denominator)


@entry("float64(F[:, ::1], int64[::1], int64, int64)")
def _ce_index_loss_serial(logits, target, ignore_index, reduction):
    """The reduced loss of the plainest call (class indices, no weights, no
    smoothing, no gradient) with four arguments instead of fourteen: Numba's
    dispatch costs about 0.1 us per argument, a fifth of a tiny call."""
    return _ce_index_serial(logits, target, np.empty(0, logits.dtype), False, ignore_index,
                            0.0, reduction, 1.0, np.empty(0), False,
                            np.empty((0, 0), logits.dtype), False, False,
                            np.empty(logits.shape[0]))


@entry(_CE_PROB)
def _ce_prob_serial(logits, target, weight, eps, reduction, grad_loss, grad_rows,
                    use_grad_rows, grad, write_grad, inplace, row_loss):
    # Probability targets: the mean divides by N, whatever the weights.
    denominator = np.float64(logits.shape[0]) if reduction == _MEAN else 1.0
    _ce_prob_block(0, logits.shape[0], logits, target, weight, eps,
                   grad_loss / denominator, grad_rows, use_grad_rows, grad,
                   write_grad, inplace, row_loss)
    return _reduce_in_order(row_loss, reduction, denominator)


@entry(_CE_PROB, parallel=True)
def _ce_prob_parallel(logits, target, weight, eps, reduction, grad_loss, grad_rows,
                      use_grad_rows, grad, write_grad, inplace, row_loss):
    denominator = np.float64(logits.shape[0]) if reduction == _MEAN else 1.0
    grad_scalar = grad_loss / denominator
    N = logits.shape[0]
    rows = _rows_per_block(logits.shape[1])
    for b in prange((N + rows - 1) // rows):
        _ce_prob_block(b * rows, min(N, (b + 1) * rows), logits, target, weight,
                       eps, grad_scalar, grad_rows, use_grad_rows,
                       grad, write_grad, inplace, row_loss)
    return _reduce_in_order(row_loss, reduction, denominator)


@entry("void(F[:, ::1], F[:, ::1], boolean)")
def _softmax_serial(x, y, log):
    _softmax_block(0, x.shape[0], x, y, log)


@entry("void(F[:, ::1], F[:, ::1], boolean)", parallel=True)
def _softmax_parallel(x, y, log):
    N = x.shape[0]
    rows = _rows_per_block(x.shape[1])
    for b in prange((N + rows - 1) // rows):
        _softmax_block(b * rows, min(N, (b + 1) * rows), x, y, log)


# --- Python entry points (the backend contract) ------------------------------
# Kept thin: one jitted call per entry point (numba's dispatch costs about
# 0.1 us per argument; a tiny call's whole budget is a few microseconds).

_ONES = {}


def _ones(C, dtype):
    """All-ones class weights of a dtype (the probability kernels multiply by
    w unconditionally: one loop per helper, no branch)."""
    found = _ONES.get((C, dtype))
    if found is None:
        found = _ONES[(C, dtype)] = np.ones(C, dtype)
    return found


def softmax(x, y):
    """y = exp(x - max) / sum(exp(x - max)) per row."""
    kernel = _softmax_parallel if use_parallel(x.size) else _softmax_serial
    kernel(x, y, False)


def log_softmax(x, y):
    """y = x - max - log(sum(exp(x - max))) per row."""
    kernel = _softmax_parallel if use_parallel(x.size) else _softmax_serial
    kernel(x, y, True)


def _run(logits, labels, probs, weight, ignore_index, reduction, label_smoothing,
         grad_scalar, grad_rows, grad, write_grad, losses):
    """One fused call: per-row losses, the reduced loss and (if write_grad)
    the gradient into grad.  Returns the reduced loss (0.0 for "none", whose
    per-row losses go into ``losses``)."""
    N, C = logits.shape
    row_loss = np.empty(N)
    code = _REDUCTION_CODES[reduction]
    use_grad_rows = grad_rows.size > 0
    if use_grad_rows:
        grad_rows = grad_rows.astype(np.float64)
    else:
        grad_rows = _NO_ROWS
    inplace = grad is logits
    parallel = use_parallel(N * C)
    if labels.size:
        kernel = _ce_index_parallel if parallel else _ce_index_serial
        total = kernel(logits, labels, weight, weight.size > 0, ignore_index,
                       label_smoothing, code, grad_scalar, grad_rows, use_grad_rows,
                       grad, write_grad, inplace, row_loss)
    else:
        kernel = _ce_prob_parallel if parallel else _ce_prob_serial
        total = kernel(logits, probs, weight if weight.size else _ones(C, logits.dtype),
                       label_smoothing, code, grad_scalar, grad_rows, use_grad_rows,
                       grad, write_grad, inplace, row_loss)
    if losses.size:
        losses[...] = row_loss
    return total


_NO_ROWS = np.empty(0)
_NO_GRAD = {np.dtype(np.float32): np.empty((0, 0), np.float32),
            np.dtype(np.float64): np.empty((0, 0), np.float64)}


def softmax_cross_entropy(logits, labels, probs, weight, ignore_index, reduction,
                          label_smoothing, losses):
    """Cross-entropy of softmax(logits) and the target; no N x C array is written."""
    if (labels.size and weight.size == 0 and label_smoothing == 0.0 and reduction != "none"
            and not use_parallel(logits.size)):
        return _ce_index_loss_serial(logits, labels, ignore_index, _REDUCTION_CODES[reduction])
    return _run(logits, labels, probs, weight, ignore_index, reduction, label_smoothing,
                1.0, _NO_ROWS, _NO_GRAD[logits.dtype], False, losses)


def softmax_cross_entropy_backward(logits, labels, probs, weight, ignore_index, reduction,
                                   label_smoothing, grad_loss, grad_rows, dlogits):
    """d(loss)/d(logits) times grad_loss (or grad_rows per row for "none")."""
    _run(logits, labels, probs, weight, ignore_index, reduction, label_smoothing,
         grad_loss, grad_rows, dlogits, True, _NO_ROWS)


def softmax_cross_entropy_with_grad(logits, labels, probs, weight, ignore_index, reduction,
                                    label_smoothing, dlogits, losses):
    """(loss, gradient of loss.sum()) in one pass; dlogits may be logits itself."""
    return _run(logits, labels, probs, weight, ignore_index, reduction, label_smoothing,
                1.0, _NO_ROWS, dlogits, True, losses)
