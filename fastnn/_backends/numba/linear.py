"""The Linear (fully connected) layer for the numba backend: BLAS products
with fused Numba epilogues.

Shapes: x is (N, K), weight is (M, K) (PyTorch's layout, one row per output
feature), bias is (M,) or None, y is (N, M).

Forward:   y = relu(x @ weight.T + bias)    (relu only with activation="relu")
Saved:     nothing beyond the inputs and, for ReLU, the output y (its sign is
           the mask: x @ weight.T + bias > 0 exactly where y > 0).
Backward:  dz = dy where y > 0 else 0 (ReLU), dz = dy otherwise;
           dx = dz @ weight, dweight = dz.T @ x, dbias = sum over rows of dz.

How the work is split:
- The matrix products go to NumPy's ``matmul``, i.e. the BLAS NumPy ships.
  Numba's own ``np.dot`` would need SciPy's BLAS bindings (SciPy is not a
  dependency of fastnn) and, where SciPy is installed, loads SciPy's separate
  OpenBLAS with a second thread pool, which measured slower.
- Forward epilogue: bias and ReLU in one in-place pass over the fresh GEMM
  output, right after the product, while it is still in cache.
- Backward prologue: one pass over dy (and y for ReLU) writes the masked dz
  (only with ReLU) and the bias gradient at once, before the two products.
  With neither ReLU nor bias there is no pass at all.
- Tiny layers (at most ``SMALL_LAYER_MAX_MACS`` multiply-adds) skip BLAS:
  one Numba call computes the whole layer, because the BLAS call and the
  extra Python steps around it cost more than the arithmetic (about 1.5 us
  for an 8x16->16 product).

The passes run on one thread.  They move a few bytes per multiply-add of
the products (a 256x1024 pass takes about 0.05 ms beside a 10 ms product),
and a parallel pass leaves Numba's OpenMP threads spinning just when BLAS
starts its own, which slows the products after it (PyTorch imported first
loads its OpenMP runtime with the spinning default, whatever ``_jit`` asks
for).  The measurements behind these choices are in docs/PERFORMANCE.md.  The bias gradient is reduced over fixed tiles
of ``_DBIAS_ROWS`` x ``_DBIAS_COLUMNS`` into float64 partial rows combined
in row-block order (float32 is accumulated in float64).

Test: the conformance suite (tests/) compares this backend with the NumPy
reference.  Bench: ``python -m fastnn bench --kernels linear`` or the linear
group of benches/.
"""

import numpy as np
from ._jit import entry, jit

# At or below this many multiply-adds (N * M * K) a single serial Numba
# kernel runs the whole layer: there it beats the BLAS call and the Python
# steps around it (docs/PERFORMANCE.md, "Linear").
SMALL_LAYER_MAX_MACS = 1 << 14

# Width of a forward-epilogue tile: one row segment, small enough that a
# row of a wide layer still splits among the threads.
_EPILOGUE_COLUMNS = 2048

# Bias-gradient tiles: _DBIAS_ROWS rows of dy summed into one float64 partial
# row segment of _DBIAS_COLUMNS entries (4 KiB, stays in L1).  Fixed sizes,
# independent of the thread count: the summation order never changes.
_DBIAS_ROWS = 256
_DBIAS_COLUMNS = 512


# ---------------------------------------------------------------- forward


@entry("void(F[:, ::1], F[::1], boolean)")
def _bias_relu_inplace(y, bias, relu):
    """y[n, m] = relu(y[n, m] + bias[m]) (relu only when ``relu``), in place.

    y is C-contiguous; work is split in row-segment tiles so that a few wide
    rows still feed every thread.  Each tile works on slice views: loop
    indices that start at 0 are provably non-negative, so Numba emits no
    wraparound test and LLVM vectorizes the loop (offset indices were several
    times slower).
    """
    n_rows, n_cols = y.shape
    tiles_per_row = (n_cols + _EPILOGUE_COLUMNS - 1) // _EPILOGUE_COLUMNS
    for tile in range(n_rows * tiles_per_row):
        start = (tile % tiles_per_row) * _EPILOGUE_COLUMNS
        stop = min(start + _EPILOGUE_COLUMNS, n_cols)
        y_part = y[tile // tiles_per_row, start:stop]
        bias_part = bias[start:stop]
        if relu:
            for m in range(y_part.size):
                value = y_part[m] + bias_part[m]
                # "value < 0" keeps NaN as NaN, as np.maximum and torch.relu do.
                y_part[m] = 0 if value < 0 else value
        else:
            for m in range(y_part.size):
                y_part[m] += bias_part[m]


@entry("void(F[:, ::1])")
def _relu_inplace(y):
    """y = relu(y), in place; y is C-contiguous, walked flat in tiles."""
    flat = y.reshape(-1)
    n_tiles = (flat.size + _EPILOGUE_COLUMNS - 1) // _EPILOGUE_COLUMNS
    for tile in range(n_tiles):
        part = flat[tile * _EPILOGUE_COLUMNS:(tile + 1) * _EPILOGUE_COLUMNS]
        for index in range(part.size):
            if part[index] < 0:
                part[index] = 0




@entry("void(F[:, ::1], F[:, ::1], F[::1], boolean, F[:, ::1])")
def _small_linear_forward(x, weight, bias, relu, y):
    """The whole forward for tiny layers: y = relu(x @ weight.T + bias).

    x (N, K), weight (M, K), bias (M,) or (0,), y (N, M), all C-contiguous;
    y is written, not read.  weight is first transposed into a (K, M)
    scratch so that the inner loop runs along contiguous output columns and
    vectorizes without reassociating sums.  The output comes in from Python:
    returning a new array from Numba (boxing it) costs more than this
    whole kernel at 8x16->16.
    """
    n_rows, n_in = x.shape
    n_out = weight.shape[0]
    weight_t = np.empty((n_in, n_out), dtype=weight.dtype)
    for m in range(n_out):
        for k in range(n_in):
            weight_t[k, m] = weight[m, k]
    for n in range(n_rows):
        y_row = y[n]
        y_row[:] = 0
        for k in range(n_in):
            x_nk = x[n, k]
            w_row = weight_t[k]
            for m in range(n_out):
                y_row[m] += x_nk * w_row[m]
        if bias.size:
            for m in range(n_out):
                y_row[m] += bias[m]
        if relu:
            for m in range(n_out):
                if y_row[m] < 0:
                    y_row[m] = 0


def linear_forward(x, weight, bias, relu, y):
    n_rows, n_in = x.shape
    n_out = weight.shape[0]
    if n_rows * n_out * n_in <= SMALL_LAYER_MAX_MACS:
        _small_linear_forward(np.ascontiguousarray(x), np.ascontiguousarray(weight),
                              bias, relu, y)
        return
    np.matmul(x, weight.T, out=y)
    if bias.size:
        _bias_relu_inplace(y, bias, relu)
    elif relu:
        _relu_inplace(y)


# --------------------------------------------------------------- backward


@jit()
def _sum_partials(partials, dbias):
    """dbias[m] = sum of partials[b, m] over row blocks b, in block order.

    Summed in float64 (the partials' type) and rounded once on the store.
    """
    n_blocks, n_cols = partials.shape
    total = partials[0].copy()
    for block in range(1, n_blocks):
        block_sums = partials[block]
        for m in range(n_cols):
            total[m] += block_sums[m]
    for m in range(n_cols):
        dbias[m] = total[m]


@entry("void(F[:, ::1], F[:, ::1], F[:, ::1], F[::1], boolean)")
def _relu_mask_and_dbias(dy, y, dz, dbias, has_bias):
    """dz = dy where y > 0 else 0, and (if has_bias) dbias = column sums of dz.

    dy, y and dz are C-contiguous (N, M).  Each tile of _DBIAS_ROWS rows by
    _DBIAS_COLUMNS columns sums into its own float64 partial row segment;
    the partial rows are then added in block order.  Per row segment, the
    mask loop and the sum loop are separate: the sum rereads dz from L1, and
    each loop vectorizes on its own.  Slice views keep indices non-negative
    (see _bias_relu_inplace).
    """
    n_rows, n_cols = dy.shape
    row_blocks = max((n_rows + _DBIAS_ROWS - 1) // _DBIAS_ROWS, 1)
    col_blocks = (n_cols + _DBIAS_COLUMNS - 1) // _DBIAS_COLUMNS
    partials = np.zeros((row_blocks if has_bias else 0, n_cols), dtype=np.float64)
    for tile in range(row_blocks * col_blocks):
        block = tile // col_blocks
        col_start = (tile % col_blocks) * _DBIAS_COLUMNS
        col_stop = min(col_start + _DBIAS_COLUMNS, n_cols)
        row_stop = min((block + 1) * _DBIAS_ROWS, n_rows)
        for n in range(block * _DBIAS_ROWS, row_stop):
            dy_part = dy[n, col_start:col_stop]
            y_part = y[n, col_start:col_stop]
            dz_part = dz[n, col_start:col_stop]
            for m in range(dz_part.size):
                dz_part[m] = dy_part[m] if y_part[m] > 0 else 0
            if has_bias:
                block_sums = partials[block, col_start:col_stop]
                for m in range(dz_part.size):
                    block_sums[m] += dz_part[m]
    if has_bias:
        _sum_partials(partials, dbias)


@entry("void(F[:, ::1], F[::1])")
def _column_sums(dy, dbias):
    """dbias = column sums of dy (N, M, C-contiguous), tiled as above."""
    n_rows, n_cols = dy.shape
    row_blocks = max((n_rows + _DBIAS_ROWS - 1) // _DBIAS_ROWS, 1)
    col_blocks = (n_cols + _DBIAS_COLUMNS - 1) // _DBIAS_COLUMNS
    partials = np.zeros((row_blocks, n_cols), dtype=np.float64)
    for tile in range(row_blocks * col_blocks):
        block = tile // col_blocks
        col_start = (tile % col_blocks) * _DBIAS_COLUMNS
        col_stop = min(col_start + _DBIAS_COLUMNS, n_cols)
        row_stop = min((block + 1) * _DBIAS_ROWS, n_rows)
        block_sums = partials[block, col_start:col_stop]
        for n in range(block * _DBIAS_ROWS, row_stop):
            dy_part = dy[n, col_start:col_stop]
            for m in range(dy_part.size):
                block_sums[m] += dy_part[m]
    _sum_partials(partials, dbias)




@entry("void(F[:, ::1], F[:, ::1], F[:, ::1], F[:, ::1], boolean, F[:, ::1], "
       "F[:, ::1], F[::1])")
def _small_linear_backward(dy, x, weight, y, relu, dx, dweight, dbias):
    """The whole backward for tiny layers; all arrays C-contiguous.

    Writes dweight (M, K), dx (N, K) unless it is (0, 0), and dbias (M,)
    unless it is (0,); outputs come in from Python (see
    _small_linear_forward).  y is only read with relu.  Loops are ordered
    so that the innermost one runs along contiguous rows of K values.
    """
    n_rows, n_out = dy.shape
    n_in = x.shape[1]
    if relu:
        dz = np.empty_like(dy)
        for n in range(n_rows):
            for m in range(n_out):
                dz[n, m] = dy[n, m] if y[n, m] > 0 else 0
    else:
        dz = dy
    if dbias.size:
        # Rows in order into float64, as the tiled pass does for one block.
        total = np.zeros(n_out, dtype=np.float64)
        for n in range(n_rows):
            for m in range(n_out):
                total[m] += dz[n, m]
        for m in range(n_out):
            dbias[m] = total[m]
    dweight[:] = 0
    for n in range(n_rows):
        x_row = x[n]
        for m in range(n_out):
            grad = dz[n, m]
            dweight_row = dweight[m]
            for k in range(n_in):
                dweight_row[k] += grad * x_row[k]
    if dx.shape[0]:
        dx[:] = 0
        for n in range(n_rows):
            dx_row = dx[n]
            for m in range(n_out):
                grad = dz[n, m]
                weight_row = weight[m]
                for k in range(n_in):
                    dx_row[k] += grad * weight_row[k]


def linear_backward(dy, x, weight, y, relu, dx, dweight, dbias):
    n_rows, n_out = dy.shape
    n_in = x.shape[1]
    if n_rows * n_out * n_in <= SMALL_LAYER_MAX_MACS:
        _small_linear_backward(np.ascontiguousarray(dy), np.ascontiguousarray(x),
                               np.ascontiguousarray(weight), y, relu, dx, dweight, dbias)
        return
    if relu or dbias.size:
        dy = np.ascontiguousarray(dy)   # the Numba passes read dy by rows
    if relu:
        dz = np.empty_like(dy)
        _relu_mask_and_dbias(dy, y, dz, dbias, dbias.size > 0)
    else:
        dz = dy
        if dbias.size:
            _column_sums(dy, dbias)
    np.matmul(dz.T, x, out=dweight)
    if dx.size:
        np.matmul(dz, weight, out=dx)
