/* The passes around the Linear layer's matrix products (the products run in
   the BLAS NumPy ships, called from the Python side with matmul's out=; the
   formulas are the NumPy reference's, fastnn/_backends/numpy/linear.py).

   Forward epilogue, in place over the fresh product y (N, M), while it is in
   cache:   y = relu(y + bias)      (each part only when the call has it)
   Backward prologue, one pass over dy (and y for ReLU):
            dz = dy where y > 0 else 0   (ReLU only; dz is written)
            dbias = sum over rows of dz  (when the call has a bias)
   The bias gradient is reduced over fixed tiles of LIN_ROWS x LIN_COLUMNS
   into double partial rows, added in row-block order.  "v < 0 ? 0 : v"
   keeps NaN as NaN, as np.maximum and torch.relu do.  One thread: the
   passes move a few bytes per multiply-add of the products. */

#ifndef FNN_LINEAR_COMMON
#define FNN_LINEAR_COMMON
#define LIN_ROWS 256
#define LIN_COLUMNS 512
#endif

static int FN(bias_relu)(const fnn_bias_relu_args *a) {
    real *y = (real *)a->y;
    const real *bias = (const real *)a->bias;
    const int64_t N = a->N, M = a->M;
    for (int64_t n = 0; n < N; n++) {
        real *row = y + n * M;
        if (bias && a->relu) {
            for (int64_t m = 0; m < M; m++) {
                real v = row[m] + bias[m];
                row[m] = v < 0 ? (real)0 : v;
            }
        } else if (bias) {
            for (int64_t m = 0; m < M; m++) row[m] += bias[m];
        } else {
            for (int64_t m = 0; m < M; m++) row[m] = row[m] < 0 ? (real)0 : row[m];
        }
    }
    return 0;
}

static int FN(relu_mask_dbias)(const fnn_relu_mask_args *a) {
    const int64_t N = a->N, M = a->M;
    const real *dy = (const real *)a->dy, *y = (const real *)a->y;
    real *dz = (real *)a->dz;
    int64_t row_blocks = fnn_max(1, fnn_cdiv(N, LIN_ROWS));
    double *partials = NULL;
    if (a->dbias) {
        partials = (double *)calloc((size_t)(row_blocks * M), sizeof(double));
        if (!partials) return 1;
    }
    for (int64_t block = 0; block < row_blocks; block++) {
        int64_t n1 = fnn_min(N, (block + 1) * LIN_ROWS);
        for (int64_t c0 = 0; c0 < M; c0 += LIN_COLUMNS) {
            int64_t w = fnn_min(M, c0 + LIN_COLUMNS) - c0;
            double *sums = partials ? partials + block * M + c0 : NULL;
            for (int64_t n = block * LIN_ROWS; n < n1; n++) {
                const real *g = dy + n * M + c0;
                if (y) {
                    const real *yr = y + n * M + c0;
                    real *z = dz + n * M + c0;
                    for (int64_t m = 0; m < w; m++) z[m] = yr[m] > 0 ? g[m] : (real)0;
                    g = z;
                }
                if (sums)
                    for (int64_t m = 0; m < w; m++) sums[m] += (double)g[m];
            }
        }
    }
    if (partials) {
        real *dbias = (real *)a->dbias;
        for (int64_t m = 0; m < M; m++) {
            double total = partials[m];
            for (int64_t block = 1; block < row_blocks; block++) total += partials[block * M + m];
            dbias[m] = (real)total;
        }
        free(partials);
    }
    return 0;
}
