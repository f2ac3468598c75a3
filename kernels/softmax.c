/* Softmax, log-softmax and the fused softmax-cross-entropy (the formulas
   are the NumPy reference's, fastnn/_backends/numpy/softmax.py; the
   per-row method is the numba backend's, fastnn/_backends/numba/softmax.py).

   Per row, while it is in cache (each logits row is read from memory once):
     m = max_c x[c]
     e_c = exp(x[c] - m), S = sum_c e_c, lse = log S   (e kept only where a
                                                         gradient row is written)
     index target y, smoothing eps, weights w (1 without):
       loss = (1-eps) w[y] (lse - (x[y] - m)) + eps/C sum_c w[c] (lse - (x[c] - m))
       grad_c = g (A e_c / S - eps/C w[c] - (1-eps) w[y] [c == y]),
       A = (1-eps) w[y] + eps/C sum_c w[c]
     probability target t: wt[c] = w[c] ((1-eps) t[c] + eps/C), T = sum wt:
       loss = lse T - sum_c wt[c] (x[c] - m),  grad_c = g (T e_c / S - wt[c])
   g is the row's gradient scale: grad_loss (or grad_rows[i]) over the mean's
   denominator, which is computed from the targets before any row.  The
   gradient may be written over the logits (in place): every value a row
   needs is read before its gradient row is written.

   Sums (S, the target sums, the losses) are double; the loss-only S adds
   runs of FNN_EXP_RUN terms in real first.  Per-row losses go to a buffer
   and are added in row order at the end; rows are cut into blocks by C
   alone: the same bits for any thread count. */

#ifndef FNN_SOFTMAX_COMMON
#define FNN_SOFTMAX_COMMON
#define FNN_BLOCK_ELEMENTS ((int64_t)1 << 15)
#define FNN_EXP_RUN 256
static int64_t fnn_rows_per_block(int64_t C) {
    return fnn_max(1, FNN_BLOCK_ELEMENTS / fnn_max(C, 1));
}
#endif

/* max of the row: FNN_MAX_LANES independent running maxima (one vector
   compare-and-select each step, which vectorizes without assuming away NaN:
   a NaN in the row makes the row's results NaN through exp(x - m) anyway). */
#ifndef FNN_MAX_LANES
#define FNN_MAX_LANES 32
#endif
static real FN(row_max)(const real *restrict x, int64_t L) {
    real lane[FNN_MAX_LANES];
    for (int l = 0; l < FNN_MAX_LANES; l++) lane[l] = x[0];
    int64_t j = 0;
    for (; j + FNN_MAX_LANES <= L; j += FNN_MAX_LANES)
        for (int l = 0; l < FNN_MAX_LANES; l++) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    real m = x[0];
    for (; j < L; j++) m = x[j] > m ? x[j] : m;
    for (int l = 0; l < FNN_MAX_LANES; l++) m = lane[l] > m ? lane[l] : m;
    return m;
}

/* e = exp(x - m) into e (distinct from x); returns sum e in double. */
static double FN(row_exp)(const real *restrict x, real *restrict e, int64_t L, real m) {
    double s = 0.0;
    #pragma omp simd reduction(+:s)
    for (int64_t j = 0; j < L; j++) {
        real v = FN(vexp_nonpositive)(x[j] - m);
        e[j] = v;
        s += (double)v;
    }
    return s;
}

/* The same over one array (the gradient written over the logits). */
static double FN(row_exp_inplace)(real *restrict e, int64_t L, real m) {
    double s = 0.0;
    #pragma omp simd reduction(+:s)
    for (int64_t j = 0; j < L; j++) {
        real v = FN(vexp_nonpositive)(e[j] - m);
        e[j] = v;
        s += (double)v;
    }
    return s;
}

/* sum exp(x - m), nothing stored: runs in real, their totals in double.
   Each run prefetches the same stretch of the row `ahead` (the next one):
   on a row already in cache the exp is compute-bound, and without it memory
   would idle during the exp and the core during the next row's first read. */
static double FN(row_exp_total)(const real *restrict x, int64_t L, real m,
                                const real *ahead) {
    double total = 0.0;
    for (int64_t j0 = 0; j0 < L; j0 += FNN_EXP_RUN) {
        int64_t j1 = fnn_min(L, j0 + FNN_EXP_RUN);
        for (int64_t j = j0; j < j1; j += 64 / (int64_t)sizeof(real))
            __builtin_prefetch(ahead + j, 0, 3);
        real run = 0;
        #pragma omp simd reduction(+:run)
        for (int64_t j = j0; j < j1; j++) run += FN(vexp_nonpositive)(x[j] - m);
        total += (double)run;
    }
    return total;
}

/* y = exp(x) elementwise for x <= 0: the exp of these kernels on its own,
   for its accuracy test (tests/test_c_backend.py). */
static int FN(exp_nonpositive)(const void *xv, void *yv, int64_t n) {
    const real *restrict x = (const real *)xv;
    real *restrict y = (real *)yv;
    for (int64_t i = 0; i < n; i++) y[i] = FN(vexp_nonpositive)(x[i]);
    return 0;
}

static void FN(softmax_rows)(const fnn_softmax_args *a, int64_t r0, int64_t r1) {
    const int64_t L = a->L;
    for (int64_t i = r0; i < r1; i++) {
        const real *x = (const real *)a->x + i * L;
        real *y = (real *)a->y + i * L;
        real m = FN(row_max)(x, L);
        double S = FN(row_exp)(x, y, L, m);
        if (a->log) {
            /* (x - m) - lse, not x - (m + lse): m + lse would round lse away */
            real lse = (real)log(S);
            for (int64_t j = 0; j < L; j++) y[j] = (x[j] - m) - lse;
        } else {
            real scale = (real)(1.0 / S);
            for (int64_t j = 0; j < L; j++) y[j] = y[j] * scale;
        }
    }
}

static int FN(softmax)(const fnn_softmax_args *a) {
    int64_t rows = fnn_rows_per_block(a->L);
    int64_t blocks = fnn_cdiv(a->R, rows);
    int nt = blocks > 1 ? fnn_threads_for(a->R * a->L) : 1;
    FNN_FOR_STATIC(nt, b, blocks,
        FN(softmax_rows)(a, b * rows, fnn_min(a->R, (b + 1) * rows)););
    return 0;
}

/* Per-row losses (and gradient rows) of rows r0:r1, index targets. */
static void FN(ce_index_rows)(const fnn_ce_args *a, int64_t r0, int64_t r1, double weight_sum,
                              double grad_scalar, double *row_loss) {
    const int64_t C = a->C;
    const real *w = (const real *)a->weight;
    const double eps = a->label_smoothing, keep = 1.0 - eps, spread = eps / (double)C;
    const int inplace = a->dlogits == a->logits;
    for (int64_t i = r0; i < r1; i++) {
        const real *x = (const real *)a->logits + i * C;
        real *grad = a->dlogits ? (real *)a->dlogits + i * C : NULL;
        int64_t y = a->labels[i];
        if (y == a->ignore_index) {
            row_loss[i] = 0.0;
            if (grad) for (int64_t j = 0; j < C; j++) grad[j] = 0;
            continue;
        }
        real m = FN(row_max)(x, C);
        double md = (double)m, x_y = (double)x[y];
        double w_y = w ? (double)w[y] : 1.0;
        double smooth = 0.0;
        if (eps != 0.0) {
            if (w) {
                #pragma omp simd reduction(+:smooth)
                for (int64_t j = 0; j < C; j++) {
                    double wj = (double)w[j];
                    smooth += wj != 0.0 ? wj * ((double)x[j] - md) : 0.0;
                }
            } else {
                #pragma omp simd reduction(+:smooth)
                for (int64_t j = 0; j < C; j++) smooth += (double)x[j] - md;
            }
        }
        double S;
        if (!grad) S = FN(row_exp_total)(x, C, m, i + 1 < a->N ? x + C : x);
        else if (inplace) S = FN(row_exp_inplace)(grad, C, m);
        else S = FN(row_exp)(x, grad, C, m);
        double lse = log(S);
        double loss = keep * w_y * (lse - (x_y - md));
        if (eps != 0.0) loss += spread * (lse * weight_sum - smooth);
        row_loss[i] = loss;
        if (!grad) continue;
        double g = a->grad_rows ? (double)((const real *)a->grad_rows)[i] * grad_scalar
                                : grad_scalar;
        double A = keep * w_y + spread * weight_sum;
        double e_y = (double)grad[y];
        double offset = g * spread;
        real s = (real)(g * A / S), o = (real)offset;
        if (eps == 0.0) {
            for (int64_t j = 0; j < C; j++) grad[j] = grad[j] * s;
        } else if (w) {
            for (int64_t j = 0; j < C; j++) grad[j] = grad[j] * s - o * w[j];
        } else {
            for (int64_t j = 0; j < C; j++) grad[j] = grad[j] * s - o;
        }
        /* the target entry in double: A e_y / S - keep w_y is a difference
           of two numbers near 1 for a confident row */
        grad[y] = (real)(g * ((A * e_y - keep * w_y * S) / S) - offset * w_y);
    }
}

/* The same for probability targets. */
static void FN(ce_prob_rows)(const fnn_ce_args *a, int64_t r0, int64_t r1, double grad_scalar,
                             double *row_loss) {
    const int64_t C = a->C;
    const real *w = (const real *)a->weight;
    const double eps = a->label_smoothing, keep = 1.0 - eps, spread = eps / (double)C;
    const int inplace = a->dlogits == a->logits;
    for (int64_t i = r0; i < r1; i++) {
        const real *x = (const real *)a->logits + i * C;
        const real *t = (const real *)a->probs + i * C;
        real *grad = a->dlogits ? (real *)a->dlogits + i * C : NULL;
        real m = FN(row_max)(x, C);
        double md = (double)m, total = 0.0, dot = 0.0;
        #pragma omp simd reduction(+:total, dot)
        for (int64_t j = 0; j < C; j++) {
            double wt = (w ? (double)w[j] : 1.0) * (keep * (double)t[j] + spread);
            total += wt;
            dot += wt != 0.0 ? wt * ((double)x[j] - md) : 0.0;
        }
        double S;
        if (!grad) S = FN(row_exp_total)(x, C, m, i + 1 < a->N ? x + C : x);
        else if (inplace) S = FN(row_exp_inplace)(grad, C, m);
        else S = FN(row_exp)(x, grad, C, m);
        row_loss[i] = log(S) * total - dot;
        if (!grad) continue;
        double g = a->grad_rows ? (double)((const real *)a->grad_rows)[i] * grad_scalar
                                : grad_scalar;
        real s = (real)(g * total / S), gk = (real)(g * keep), gs = (real)(g * spread);
        if (w) {
            for (int64_t j = 0; j < C; j++) grad[j] = grad[j] * s - (gk * t[j] + gs) * w[j];
        } else {
            for (int64_t j = 0; j < C; j++) grad[j] = grad[j] * s - (gk * t[j] + gs);
        }
    }
}

/* Returns the reduced loss; NaN with fnn_failed set when out of memory. */
static double FN(cross_entropy)(const fnn_ce_args *a) {
    const int64_t N = a->N, C = a->C;
    const real *w = (const real *)a->weight;
    double weight_sum = (double)C, denominator = 1.0;
    if (w) {
        weight_sum = 0.0;
        for (int64_t c = 0; c < C; c++) weight_sum += (double)w[c];
    }
    if (a->reduction == FNN_MEAN) {
        if (a->labels) {
            denominator = 0.0;
            for (int64_t i = 0; i < N; i++) {
                int64_t y = a->labels[i];
                if (y != a->ignore_index) denominator += w ? (double)w[y] : 1.0;
            }
        } else {
            denominator = (double)N;
        }
    }
    /* per-row gradient factor; with no counted weight at all the mean is
       nan (0/0) but, as in PyTorch, no gradient flows */
    double grad_scalar = denominator != 0.0 ? a->grad_loss / denominator : 0.0;
    if (a->grad_rows) grad_scalar = 1.0;    /* "none": the per-row factors alone */
    /* small batches keep their losses on the stack: no allocation per call */
    double small[256];
    double *row_loss = N <= 256 ? small : (double *)malloc(sizeof(double) * (size_t)N);
    if (!row_loss) {
        fnn_failed = 1;
        return NAN;
    }
    int64_t rows = fnn_rows_per_block(C);
    int64_t blocks = fnn_cdiv(N, rows);
    int nt = blocks > 1 ? fnn_threads_for(N * C) : 1;
    FNN_FOR_STATIC(nt, b, blocks,
        int64_t r0 = b * rows, r1 = fnn_min(N, r0 + rows);
        if (a->labels) FN(ce_index_rows)(a, r0, r1, weight_sum, grad_scalar, row_loss);
        else FN(ce_prob_rows)(a, r0, r1, grad_scalar, row_loss););
    double total = 0.0;
    if (a->reduction == FNN_NONE) {
        if (a->losses) {
            real *losses = (real *)a->losses;
            for (int64_t i = 0; i < N; i++) losses[i] = (real)row_loss[i];
        }
    } else {
        for (int64_t i = 0; i < N; i++) total += row_loss[i];
        if (a->reduction == FNN_MEAN) total /= denominator;
    }
    if (row_loss != small) free(row_loss);
    return total;
}
