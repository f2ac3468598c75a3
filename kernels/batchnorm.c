/* Batch normalization: two passes forward, two backward (the formulas are
   the NumPy reference's, fastnn/_backends/numpy/batchnorm.py; the method is
   the numba backend's, fastnn/_backends/numba/batchnorm.py).

   x, y, dy, dx are C-contiguous (N, C, S), seen as the 2-D array
   x2[N][W], W = C * S, whose column j belongs to channel j / S;
   statistics are per channel over n = N * S values.

   Forward, training: x read twice, y written once.
     1. moments: sum(x - shift) and sum((x - shift)^2), shift[c] = x[0, c, 0]
        (no E[x^2] - E[x]^2 cancellation); runs of 8 rows (or chunks) summed
        in x's dtype, their totals in double.
     2. affine: y = (x - m) * scale + offset, m the mean rounded to x's dtype,
        the rounding restored in offset = bias + (m - mean) * scale.
   Forward, evaluation: the affine pass with the running statistics.
   Backward, training: sums of dy and dy * (x - mean) in one pass, then
     dx = (dy - mdy) * k1 + (x - mean) * k2 + comp.
   Backward, evaluation: dx = dy * k1 (the sums from the same tiles).

   Tiles ("rows" for S < 256, "planes" otherwise) depend on the shape only,
   never on the thread count, and partial sums are combined in a fixed
   order: results are the same bits for any number of threads and whether
   a channel runs at a time or pass by pass. */

#ifndef FNN_BN_COMMON
#define FNN_BN_COMMON

#define BN_TILE_ELEMENTS ((int64_t)1 << 16)
#define BN_MIN_TILE_ROWS 64
#define BN_MAX_TILE_COLUMNS 1024
#define BN_RUN 8
#define BN_PLANE_MIN_S 256
#define BN_LANES 128
/* Channel at a time: at least this many channels to share among threads,
   and in the forward a channel of at least this many bytes. */
#define BN_MIN_CHANNELS 8
#define BN_FORWARD_MIN_CHANNEL_BYTES ((int64_t)128 << 10)

typedef struct {
    int planes;
    int64_t R, nrb, W, ncb, nslots, ntiles;
} bn_plan;

static bn_plan bn_plan_tiles(int64_t N, int64_t C, int64_t S) {
    bn_plan p;
    int64_t width = C * S;
    if (S >= BN_PLANE_MIN_S) {
        int64_t ncb = fnn_cdiv(S, BN_TILE_ELEMENTS);
        int64_t W = fnn_cdiv(fnn_cdiv(S, ncb), BN_LANES) * BN_LANES;
        ncb = fnn_cdiv(S, W);
        int64_t nrb = fnn_max(1, fnn_min(N, (N * fnn_min(S, W)) / BN_TILE_ELEMENTS));
        int64_t R = fnn_cdiv(N, nrb);
        nrb = fnn_cdiv(N, R);
        p.planes = 1; p.R = R; p.nrb = nrb; p.W = W; p.ncb = ncb;
        p.nslots = nrb * ncb; p.ntiles = p.nslots * C;
        return p;
    }
    int64_t ncb = fnn_cdiv(width, BN_MAX_TILE_COLUMNS);
    int64_t W = fnn_cdiv(width, ncb);
    int64_t R = fnn_min(N, fnn_max(BN_MIN_TILE_ROWS, fnn_cdiv(BN_TILE_ELEMENTS, width)));
    p.planes = 0; p.R = R; p.nrb = fnn_cdiv(N, R); p.W = W; p.ncb = ncb;
    p.nslots = p.nrb; p.ntiles = p.nrb * ncb;
    return p;
}

typedef struct { int64_t slot, c, n0, n1, j0, j1; } bn_tile;

/* Rows n0:n1 and columns j0:j1 of x2 that tile `tile` covers; c = -1 for
   "rows" tiles, else the channel of a "planes" tile. */
static bn_tile bn_tile_extent(const bn_plan *p, int64_t tile, int64_t N, int64_t C, int64_t S) {
    bn_tile t;
    if (p->planes) {
        t.slot = tile / C;
        t.c = tile - t.slot * C;
        int64_t rb = t.slot / p->ncb, cb = t.slot - rb * p->ncb;
        t.n0 = rb * p->R;
        t.n1 = fnn_min(N, t.n0 + p->R);
        t.j0 = t.c * S + cb * p->W;
        t.j1 = t.c * S + fnn_min(S, cb * p->W + p->W);
        return t;
    }
    int64_t rb = tile / p->ncb, cb = tile - rb * p->ncb;
    t.slot = rb;
    t.c = -1;
    t.n0 = rb * p->R;
    t.n1 = fnn_min(N, t.n0 + p->R);
    t.j0 = cb * p->W;
    t.j1 = fnn_min(C * S, t.j0 + p->W);
    return t;
}

/* Width of the partial-sum rows: one entry per channel ("planes") or per
   column ("rows"). */
static int64_t bn_partial_width(const bn_plan *p, int64_t C, int64_t S) {
    return p->planes ? C : C * S;
}

/* Channel c's totals of two partial buffers: slots in slot order, then
   ("rows") its S columns in column order. */
static void bn_channel_totals(const bn_plan *p, const double *s_a, const double *s_b,
                              int64_t C, int64_t S, int64_t c, double *ta, double *tb) {
    int64_t width = bn_partial_width(p, C, S);
    double a = 0.0, b = 0.0;
    if (p->planes) {
        for (int64_t slot = 0; slot < p->nslots; slot++) {
            a += s_a[slot * width + c];
            b += s_b[slot * width + c];
        }
    } else {
        for (int64_t j = c * S; j < c * S + S; j++) {
            double ca = s_a[j], cb = s_b[j];
            for (int64_t slot = 1; slot < p->nslots; slot++) {
                ca += s_a[slot * width + j];
                cb += s_b[slot * width + j];
            }
            a += ca;
            b += cb;
        }
    }
    *ta = a;
    *tb = b;
}

/* Adds slot rows 1.. of two partial buffers into row 0, row by row, so
   that row 0 holds each entry's sum in slot order (the order
   bn_channel_totals adds them in: the same bits).  Rows are read front to
   back, half of them from the other thread's cache: walking the buffers
   column by column instead (slot stride) defeats the prefetchers and cost
   a serial section as long as a tenth of the pass on 4096 x 1024.  Returns
   the plan to give bn_channel_totals afterwards (one slot). */
#define BN_FOLD_BLOCK 512
static bn_plan bn_fold_slots(const bn_plan *p, double *restrict s_a, double *restrict s_b,
                             int64_t C, int64_t S, int nt) {
    int64_t width = bn_partial_width(p, C, S);
    int64_t nblocks = fnn_cdiv(width, BN_FOLD_BLOCK);
    /* column blocks among the threads: each column's additions stay in
       slot order, whoever does them */
    int ft = nblocks > 1 && p->nslots * width >= FNN_PARALLEL_MIN_ELEMENTS ? nt : 1;
    FNN_FOR_STATIC(ft, b, nblocks,
        int64_t j0 = b * BN_FOLD_BLOCK, j1 = fnn_min(width, j0 + BN_FOLD_BLOCK);
        for (int64_t slot = 1; slot < p->nslots; slot++) {
            const double *ra = s_a + slot * width, *rb = s_b + slot * width;
            for (int64_t j = j0; j < j1; j++) { s_a[j] += ra[j]; s_b[j] += rb[j]; }
        });
    bn_plan q = *p;
    q.nslots = 1;
    return q;
}

/* Pairwise sum of a[0:w] in a fixed order; a is overwritten. */
static double bn_fold_sum(double *a, int64_t w) {
    while (w > 1) {
        int64_t h = (w + 1) / 2;
        for (int64_t i = 0; i < w - h; i++) a[i] += a[i + h];
        w = h;
    }
    return a[0];
}

#endif /* FNN_BN_COMMON */


/* ---- tile kernels ------------------------------------------------------ */

/* acc1 = sum(x - shift), acc2 = sum((x - shift)^2) per column j0:j1 over
   rows n0:n1; shift per column.  Runs of BN_RUN rows in real, then double. */
static void FN(bn_moments_rows)(const real *x, int64_t W, int64_t n0, int64_t n1,
                                int64_t j0, int64_t j1, const real *shift,
                                double *restrict acc1, double *restrict acc2) {
    real run1[BN_MAX_TILE_COLUMNS], run2[BN_MAX_TILE_COLUMNS];
    int64_t w = j1 - j0;
    const real *sh = shift + j0;
    for (int64_t i = 0; i < w; i++) { acc1[i] = 0.0; acc2[i] = 0.0; }
    for (int64_t r0 = n0; r0 < n1; r0 += BN_RUN) {
        const real *xr = x + r0 * W + j0;
        for (int64_t i = 0; i < w; i++) {
            real d = xr[i] - sh[i];
            run1[i] = d;
            run2[i] = d * d;
        }
        int64_t r1 = fnn_min(n1, r0 + BN_RUN);
        for (int64_t n = r0 + 1; n < r1; n++) {
            xr = x + n * W + j0;
            for (int64_t i = 0; i < w; i++) {
                real d = xr[i] - sh[i];
                run1[i] += d;
                run2[i] += d * d;
            }
        }
        for (int64_t i = 0; i < w; i++) { acc1[i] += run1[i]; acc2[i] += run2[i]; }
    }
}

/* acc_dy = sum(dy), acc_dyx = sum(dy * (x - center)), as bn_moments_rows. */
static void FN(bn_grad_sums_rows)(const real *dy, const real *x, int64_t W, int64_t n0,
                                  int64_t n1, int64_t j0, int64_t j1, const real *center,
                                  double *restrict acc_dy, double *restrict acc_dyx) {
    real run1[BN_MAX_TILE_COLUMNS], run2[BN_MAX_TILE_COLUMNS];
    int64_t w = j1 - j0;
    const real *ce = center + j0;
    for (int64_t i = 0; i < w; i++) { acc_dy[i] = 0.0; acc_dyx[i] = 0.0; }
    for (int64_t r0 = n0; r0 < n1; r0 += BN_RUN) {
        const real *gr = dy + r0 * W + j0, *xr = x + r0 * W + j0;
        for (int64_t i = 0; i < w; i++) {
            run1[i] = gr[i];
            run2[i] = gr[i] * (xr[i] - ce[i]);
        }
        int64_t r1 = fnn_min(n1, r0 + BN_RUN);
        for (int64_t n = r0 + 1; n < r1; n++) {
            gr = dy + n * W + j0;
            xr = x + n * W + j0;
            for (int64_t i = 0; i < w; i++) {
                run1[i] += gr[i];
                run2[i] += gr[i] * (xr[i] - ce[i]);
            }
        }
        for (int64_t i = 0; i < w; i++) { acc_dy[i] += run1[i]; acc_dyx[i] += run2[i]; }
    }
}

/* One channel's stretch x2[n0:n1, j0:j1] with one shift: each row read as
   chunks of BN_LANES values (lane i into accumulator i), runs of BN_RUN
   chunks in real, then double; a row's last partial chunk straight into
   double.  Returns the two sums through s1, s2 (lanes folded pairwise). */
static void FN(bn_moments_plane)(const real *x, int64_t W, int64_t n0, int64_t n1,
                                 int64_t j0, int64_t j1, real shift, double *s1, double *s2) {
    double acc1[BN_LANES], acc2[BN_LANES];
    real run1[BN_LANES], run2[BN_LANES];
    for (int i = 0; i < BN_LANES; i++) { acc1[i] = acc2[i] = 0.0; run1[i] = run2[i] = 0; }
    int64_t span = j1 - j0, full = span - span % BN_LANES;
    int in_run = 0;
    for (int64_t n = n0; n < n1; n++) {
        const real *xr = x + n * W + j0;
        for (int64_t q = 0; q < full; q += BN_LANES) {
            const real *xs = xr + q;
            for (int i = 0; i < BN_LANES; i++) {
                real d = xs[i] - shift;
                run1[i] += d;
                run2[i] += d * d;
            }
            if (++in_run == BN_RUN) {
                for (int i = 0; i < BN_LANES; i++) {
                    acc1[i] += run1[i]; acc2[i] += run2[i];
                    run1[i] = 0; run2[i] = 0;
                }
                in_run = 0;
            }
        }
        for (int64_t i = 0; i < span - full; i++) {
            double d = (double)xr[full + i] - (double)shift;
            acc1[i] += d;
            acc2[i] += d * d;
        }
    }
    for (int i = 0; i < BN_LANES; i++) { acc1[i] += run1[i]; acc2[i] += run2[i]; }
    *s1 = bn_fold_sum(acc1, BN_LANES);
    *s2 = bn_fold_sum(acc2, BN_LANES);
}

static void FN(bn_grad_sums_plane)(const real *dy, const real *x, int64_t W, int64_t n0,
                                   int64_t n1, int64_t j0, int64_t j1, real center,
                                   double *s_dy, double *s_dyx) {
    double acc1[BN_LANES], acc2[BN_LANES];
    real run1[BN_LANES], run2[BN_LANES];
    for (int i = 0; i < BN_LANES; i++) { acc1[i] = acc2[i] = 0.0; run1[i] = run2[i] = 0; }
    int64_t span = j1 - j0, full = span - span % BN_LANES;
    int in_run = 0;
    for (int64_t n = n0; n < n1; n++) {
        const real *gr = dy + n * W + j0, *xr = x + n * W + j0;
        for (int64_t q = 0; q < full; q += BN_LANES) {
            const real *gs = gr + q, *xs = xr + q;
            for (int i = 0; i < BN_LANES; i++) {
                run1[i] += gs[i];
                run2[i] += gs[i] * (xs[i] - center);
            }
            if (++in_run == BN_RUN) {
                for (int i = 0; i < BN_LANES; i++) {
                    acc1[i] += run1[i]; acc2[i] += run2[i];
                    run1[i] = 0; run2[i] = 0;
                }
                in_run = 0;
            }
        }
        for (int64_t i = 0; i < span - full; i++) {
            double g = (double)gr[full + i];
            acc1[i] += g;
            acc2[i] += g * ((double)xr[full + i] - (double)center);
        }
    }
    for (int i = 0; i < BN_LANES; i++) { acc1[i] += run1[i]; acc2[i] += run2[i]; }
    *s_dy = bn_fold_sum(acc1, BN_LANES);
    *s_dyx = bn_fold_sum(acc2, BN_LANES);
}

/* y[0:w] = (x - center) * scale + offset.  Coefficients per element
   (cs = 1: arrays indexed like x) or one for all (cs = 0: entry 0); the
   inline bodies are instantiated for each cs, so the index never carries a
   run-time multiply.  With `stream`, the aligned middle goes out through
   streaming stores. */
#define BN_AFFINE(i) ((x[i] - center[(i) * cs]) * scale[(i) * cs] + offset[(i) * cs])
static inline __attribute__((always_inline)) void FN(bn_affine_body)(
        const real *restrict x, real *restrict y, int64_t w, const real *center,
        const real *scale, const real *offset, const int cs, int stream) {
    int64_t i = 0;
    if (stream && FNN_STREAM_BYTES) {
        int64_t head = FN(stream_head)(y, w);
        for (; i < head; i++) y[i] = BN_AFFINE(i);
        for (; i + FNN_STREAM_LANES <= w; i += FNN_STREAM_LANES) {
            real block[FNN_STREAM_LANES] __attribute__((aligned(64)));
            for (int l = 0; l < FNN_STREAM_LANES; l++) block[l] = BN_AFFINE(i + l);
            FN(stream_vector)(y + i, block);
        }
    }
    for (; i < w; i++) y[i] = BN_AFFINE(i);
}
#undef BN_AFFINE

static void FN(bn_affine_span)(const real *restrict x, real *restrict y, int64_t w,
                               const real *center, const real *scale, const real *offset,
                               int cs, int stream) {
    if (cs) FN(bn_affine_body)(x, y, w, center, scale, offset, 1, stream);
    else FN(bn_affine_body)(x, y, w, center, scale, offset, 0, stream);
}

/* dx[0:w] = (dy - dyc) * k1 + (x - xc) * k2 + comp; coefficients as above. */
#define BN_GRAD(i) ((dy[i] - dyc[(i) * cs]) * k1[(i) * cs] \
                    + (x[i] - xc[(i) * cs]) * k2[(i) * cs] + comp[(i) * cs])
static inline __attribute__((always_inline)) void FN(bn_grad_input_body)(
        const real *restrict dy, const real *restrict x, real *restrict dx, int64_t w,
        const real *dyc, const real *k1, const real *xc, const real *k2, const real *comp,
        const int cs, int stream) {
    int64_t i = 0;
    if (stream && FNN_STREAM_BYTES) {
        int64_t head = FN(stream_head)(dx, w);
        for (; i < head; i++) dx[i] = BN_GRAD(i);
        for (; i + FNN_STREAM_LANES <= w; i += FNN_STREAM_LANES) {
            real block[FNN_STREAM_LANES] __attribute__((aligned(64)));
            for (int l = 0; l < FNN_STREAM_LANES; l++) block[l] = BN_GRAD(i + l);
            FN(stream_vector)(dx + i, block);
        }
    }
    for (; i < w; i++) dx[i] = BN_GRAD(i);
}
#undef BN_GRAD

static void FN(bn_grad_input_span)(const real *restrict dy, const real *restrict x,
                                   real *restrict dx, int64_t w, const real *dyc,
                                   const real *k1, const real *xc, const real *k2,
                                   const real *comp, int cs, int stream) {
    if (cs) FN(bn_grad_input_body)(dy, x, dx, w, dyc, k1, xc, k2, comp, 1, stream);
    else FN(bn_grad_input_body)(dy, x, dx, w, dyc, k1, xc, k2, comp, 0, stream);
}

static void FN(bn_scaled_span)(const real *restrict dy, real *restrict dx, int64_t w,
                               const real *k1, int cs) {
    if (cs) {
        for (int64_t i = 0; i < w; i++) dx[i] = dy[i] * k1[i];
    } else {
        real k = k1[0];
        for (int64_t i = 0; i < w; i++) dx[i] = dy[i] * k;
    }
}


/* ---- one tile of each pass (either layout) ------------------------------
   Per-column coefficient vectors (length W) serve "rows" tiles; "planes"
   tiles read entry c of the per-channel ones. */

static void FN(bn_moments_tile)(const bn_plan *p, int64_t tile, const real *x, int64_t N,
                                int64_t C, int64_t S, const real *shift_cols,
                                const real *shift, double *s1, double *s2) {
    bn_tile t = bn_tile_extent(p, tile, N, C, S);
    int64_t width = bn_partial_width(p, C, S), W = C * S;
    if (t.c < 0)
        FN(bn_moments_rows)(x, W, t.n0, t.n1, t.j0, t.j1, shift_cols,
                            s1 + t.slot * width + t.j0, s2 + t.slot * width + t.j0);
    else
        FN(bn_moments_plane)(x, W, t.n0, t.n1, t.j0, t.j1, shift[t.c],
                             s1 + t.slot * width + t.c, s2 + t.slot * width + t.c);
}

static void FN(bn_grad_sums_tile)(const bn_plan *p, int64_t tile, const real *dy,
                                  const real *x, int64_t N, int64_t C, int64_t S,
                                  const real *center_cols, const real *center,
                                  double *s_dy, double *s_dyx) {
    bn_tile t = bn_tile_extent(p, tile, N, C, S);
    int64_t width = bn_partial_width(p, C, S), W = C * S;
    if (t.c < 0)
        FN(bn_grad_sums_rows)(dy, x, W, t.n0, t.n1, t.j0, t.j1, center_cols,
                              s_dy + t.slot * width + t.j0, s_dyx + t.slot * width + t.j0);
    else
        FN(bn_grad_sums_plane)(dy, x, W, t.n0, t.n1, t.j0, t.j1, center[t.c],
                               s_dy + t.slot * width + t.c, s_dyx + t.slot * width + t.c);
}

/* Coefficients: `coef` holds K vectors of length `stride` (W for "rows",
   C for "planes"), one after the other. */
static void FN(bn_affine_tile)(const bn_plan *p, int64_t tile, const real *x, real *y,
                               int64_t N, int64_t C, int64_t S, const real *coef,
                               int64_t stride, int stream) {
    bn_tile t = bn_tile_extent(p, tile, N, C, S);
    int64_t W = C * S, w = t.j1 - t.j0;
    int64_t at = t.c < 0 ? t.j0 : t.c;
    int cs = t.c < 0;
    for (int64_t n = t.n0; n < t.n1; n++)
        FN(bn_affine_span)(x + n * W + t.j0, y + n * W + t.j0, w, coef + at,
                           coef + stride + at, coef + 2 * stride + at, cs, stream);
    if (stream) fnn_store_fence();
}

static void FN(bn_grad_input_tile)(const bn_plan *p, int64_t tile, const real *dy,
                                   const real *x, real *dx, int64_t N, int64_t C, int64_t S,
                                   const real *coef, int64_t stride, int stream) {
    bn_tile t = bn_tile_extent(p, tile, N, C, S);
    int64_t W = C * S, w = t.j1 - t.j0;
    int64_t at = t.c < 0 ? t.j0 : t.c;
    int cs = t.c < 0;
    for (int64_t n = t.n0; n < t.n1; n++) {
        int64_t o = n * W + t.j0;
        FN(bn_grad_input_span)(dy + o, x + o, dx + o, w, coef + at, coef + stride + at,
                               coef + 2 * stride + at, coef + 3 * stride + at,
                               coef + 4 * stride + at, cs, stream);
    }
    if (stream) fnn_store_fence();
}

static void FN(bn_eval_grad_tile)(const bn_plan *p, int64_t tile, const real *dy,
                                  const real *x, real *dx, int64_t N, int64_t C, int64_t S,
                                  const real *k1, int need_sums, const real *center_cols,
                                  const real *center, double *s_dy, double *s_dyx) {
    bn_tile t = bn_tile_extent(p, tile, N, C, S);
    int64_t W = C * S, w = t.j1 - t.j0;
    int64_t at = t.c < 0 ? t.j0 : t.c;
    for (int64_t n = t.n0; n < t.n1; n++)
        FN(bn_scaled_span)(dy + n * W + t.j0, dx + n * W + t.j0, w, k1 + at, t.c < 0);
    /* the tile was just read: its sums find it in cache */
    if (need_sums)
        FN(bn_grad_sums_tile)(p, tile, dy, x, N, C, S, center_cols, center, s_dy, s_dyx);
}


/* ---- per-channel statistics and coefficients ---------------------------- */

/* Channel c's batch mean (returned) and invstd (into invstd_out) from its
   shifted sums; running statistics moved (unbiased variance). */
static double FN(bn_channel_statistics)(const fnn_bn_forward_args *a, int64_t c, double sum1,
                                        double sum2, double shift) {
    double n = (double)(a->N * a->S);
    double d = sum1 / n;
    double m2 = sum2 - sum1 * d;
    if (!(m2 > 0.0)) m2 = m2 != m2 ? m2 : 0.0;
    double mean = shift + d;
    real *invstd = (real *)a->invstd;
    invstd[c] = (real)(1.0 / sqrt(m2 / n + a->eps));
    if (a->has_running_mean) {
        real *rm = (real *)a->running_mean;
        rm[c] = (real)((1.0 - a->momentum) * (double)rm[c] + a->momentum * mean);
    }
    if (a->has_running_var) {
        real *rv = (real *)a->running_var;
        rv[c] = (real)((1.0 - a->momentum) * (double)rv[c] + a->momentum * (m2 / (n - 1.0)));
    }
    return mean;
}

/* Channel c's (center, scale, offset) into coef[0|1|2][at]; center (the
   mean rounded to real) also into mean_out[c]. */
static void FN(bn_channel_affine)(const fnn_bn_forward_args *a, int64_t c, double mean,
                                  real *coef, int64_t stride, int64_t at) {
    real *mean_out = (real *)a->mean;
    real center = (real)mean;
    mean_out[c] = center;
    double sc = (double)((const real *)a->invstd)[c];
    if (a->has_weight) sc *= (double)((const real *)a->weight)[c];
    double off = ((double)center - mean) * sc;
    if (a->has_bias) off += (double)((const real *)a->bias)[c];
    coef[at] = center;
    coef[stride + at] = (real)sc;
    coef[2 * stride + at] = (real)off;
}

/* Repeat each channel's entry of K coefficient vectors over its S columns
   ("rows" layout with S > 1): per_channel[k*C + c] -> cols[k*W + c*S + s]. */
static void FN(bn_expand)(const real *per_channel, real *cols, int K, int64_t C, int64_t S) {
    for (int k = 0; k < K; k++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++)
                cols[k * C * S + c * S + s] = per_channel[k * C + c];
}


/* ---- drivers -------------------------------------------------------------- */

static int FN(batchnorm_forward)(const fnn_bn_forward_args *a) {
    const int64_t N = a->N, C = a->C, S = a->S, W = C * S;
    const real *x = (const real *)a->x;
    real *y = (real *)a->y;
    bn_plan p = bn_plan_tiles(N, C, S);
    int nt = p.ntiles > 1 ? fnn_threads_for(N * W) : 1;
    int stream = 2 * N * W * (int64_t)sizeof(real) >= fnn_stream_min_bytes;
    int cols = !p.planes && S > 1;      /* coefficients per column */
    int64_t stride = p.planes || S == 1 ? C : W;
    /* per channel: center, scale, offset (3C), shift (C); per column: 3W + W */
    real *chan = (real *)malloc(sizeof(real) * (size_t)(4 * C + (cols ? 4 * W : 0)));
    double *stats = (double *)malloc(sizeof(double) * (size_t)C);
    double *s1 = NULL, *s2 = NULL;
    int64_t width = bn_partial_width(&p, C, S);
    if (a->training) {
        s1 = (double *)malloc(sizeof(double) * (size_t)(p.nslots * width));
        s2 = (double *)malloc(sizeof(double) * (size_t)(p.nslots * width));
    }
    if (!chan || !stats || (a->training && (!s1 || !s2))) {
        free(chan); free(stats); free(s1); free(s2);
        return 1;
    }
    real *shift = chan + 3 * C;
    real *coef = cols ? chan + 4 * C : chan;
    real *shift_cols = cols ? coef + 3 * W : shift;
    if (a->training) {
        for (int64_t c = 0; c < C; c++) shift[c] = x[c * S];
        int64_t channel_bytes = N * S * (int64_t)sizeof(real);
        int by_channel = p.planes && C >= BN_MIN_CHANNELS
                         && channel_bytes >= BN_FORWARD_MIN_CHANNEL_BYTES
                         && channel_bytes <= fnn_channel_cache_bytes;
        if (by_channel) {
            /* both passes of a channel back to back: the second finds it in cache */
            FNN_FOR_DYNAMIC(nt, c, C,
                for (int64_t slot = 0; slot < p.nslots; slot++)
                    FN(bn_moments_tile)(&p, slot * C + c, x, N, C, S, shift, shift, s1, s2);
                double t1, t2;
                bn_channel_totals(&p, s1, s2, C, S, c, &t1, &t2);
                double mean = FN(bn_channel_statistics)(a, c, t1, t2, (double)shift[c]);
                FN(bn_channel_affine)(a, c, mean, coef, stride, c);
                for (int64_t slot = 0; slot < p.nslots; slot++)
                    FN(bn_affine_tile)(&p, slot * C + c, x, y, N, C, S, coef, stride, stream););
            free(chan); free(stats); free(s1); free(s2);
            return 0;
        }
        if (cols) FN(bn_expand)(shift, shift_cols, 1, C, S);
        FNN_FOR_STATIC(nt, tile, p.ntiles,
            FN(bn_moments_tile)(&p, tile, x, N, C, S, shift_cols, shift, s1, s2););
        bn_plan folded = bn_fold_slots(&p, s1, s2, C, S, nt);
        for (int64_t c = 0; c < C; c++) {
            double t1, t2;
            bn_channel_totals(&folded, s1, s2, C, S, c, &t1, &t2);
            stats[c] = FN(bn_channel_statistics)(a, c, t1, t2, (double)shift[c]);
        }
    } else {
        const real *rm = (const real *)a->running_mean, *rv = (const real *)a->running_var;
        real *invstd = (real *)a->invstd;
        for (int64_t c = 0; c < C; c++) {
            stats[c] = (double)rm[c];
            invstd[c] = (real)(1.0 / sqrt((double)rv[c] + a->eps));
        }
    }
    for (int64_t c = 0; c < C; c++) FN(bn_channel_affine)(a, c, stats[c], chan, C, c);
    if (cols) FN(bn_expand)(chan, coef, 3, C, S);
    FNN_FOR_STATIC(nt, tile, p.ntiles,
        FN(bn_affine_tile)(&p, tile, x, y, N, C, S, coef, stride, stream););
    free(chan); free(stats); free(s1); free(s2);
    return 0;
}

/* Channel c's (dy_center, k1, x_center, k2, comp) into coef[0..4][at], and
   dweight, dbias when the call has a weight. */
static void FN(bn_channel_grad)(const fnn_bn_backward_args *a, int64_t c, double sum_dy,
                                double sum_dyx, real *coef, int64_t stride, int64_t at) {
    double n = (double)(a->N * a->S);
    double istd = (double)((const real *)a->invstd)[c];
    if (a->has_weight) {
        ((real *)a->dweight)[c] = (real)(istd * sum_dyx);
        ((real *)a->dbias)[c] = (real)sum_dy;
    }
    double k1 = a->has_weight ? istd * (double)((const real *)a->weight)[c] : istd;
    double mdy = sum_dy / n;
    real dyc = (real)mdy;
    coef[at] = dyc;
    coef[stride + at] = (real)k1;
    coef[2 * stride + at] = ((const real *)a->mean)[c];
    coef[3 * stride + at] = (real)(-k1 * istd * istd * (sum_dyx / n));
    coef[4 * stride + at] = (real)(k1 * ((double)dyc - mdy));
}

static int FN(batchnorm_backward)(const fnn_bn_backward_args *a) {
    const int64_t N = a->N, C = a->C, S = a->S, W = C * S;
    const real *dy = (const real *)a->dy, *x = (const real *)a->x;
    const real *mean = (const real *)a->mean, *invstd = (const real *)a->invstd;
    real *dx = (real *)a->dx;
    bn_plan p = bn_plan_tiles(N, C, S);
    int nt = p.ntiles > 1 ? fnn_threads_for(N * W) : 1;
    int cols = !p.planes && S > 1;
    int64_t stride = p.planes || S == 1 ? C : W;
    int64_t width = bn_partial_width(&p, C, S);
    /* per channel: 5 coefficient vectors; per column: 5 more and the mean */
    real *chan = (real *)malloc(sizeof(real) * (size_t)(5 * C + (cols ? 6 * W : 0)));
    double *s_dy = (double *)malloc(sizeof(double) * (size_t)(p.nslots * width));
    double *s_dyx = (double *)malloc(sizeof(double) * (size_t)(p.nslots * width));
    if (!chan || !s_dy || !s_dyx) {
        free(chan); free(s_dy); free(s_dyx);
        return 1;
    }
    real *coef = cols ? chan + 5 * C : chan;
    real *mean_cols = cols ? coef + 5 * W : (real *)mean;
    if (cols) FN(bn_expand)(mean, mean_cols, 1, C, S);
    if (a->training) {
        int64_t channel_bytes = N * S * (int64_t)sizeof(real);
        int by_channel = p.planes && C >= BN_MIN_CHANNELS
                         && 2 * channel_bytes <= fnn_channel_cache_bytes;
        int stream = 3 * N * W * (int64_t)sizeof(real) >= fnn_stream_min_bytes;
        if (by_channel) {
            FNN_FOR_STATIC(nt, c, C,
                for (int64_t slot = 0; slot < p.nslots; slot++)
                    FN(bn_grad_sums_tile)(&p, slot * C + c, dy, x, N, C, S, mean, mean,
                                          s_dy, s_dyx);
                double t1, t2;
                bn_channel_totals(&p, s_dy, s_dyx, C, S, c, &t1, &t2);
                FN(bn_channel_grad)(a, c, t1, t2, coef, stride, c);
                for (int64_t slot = 0; slot < p.nslots; slot++)
                    FN(bn_grad_input_tile)(&p, slot * C + c, dy, x, dx, N, C, S, coef,
                                           stride, stream););
        } else {
            FNN_FOR_STATIC(nt, tile, p.ntiles,
                FN(bn_grad_sums_tile)(&p, tile, dy, x, N, C, S, mean_cols, mean, s_dy, s_dyx););
            bn_plan folded = bn_fold_slots(&p, s_dy, s_dyx, C, S, nt);
            for (int64_t c = 0; c < C; c++) {
                double t1, t2;
                bn_channel_totals(&folded, s_dy, s_dyx, C, S, c, &t1, &t2);
                FN(bn_channel_grad)(a, c, t1, t2, chan, C, c);
            }
            if (cols) FN(bn_expand)(chan, coef, 5, C, S);
            FNN_FOR_STATIC(nt, tile, p.ntiles,
                FN(bn_grad_input_tile)(&p, tile, dy, x, dx, N, C, S, coef, stride, stream););
        }
    } else {
        for (int64_t c = 0; c < C; c++)
            chan[c] = a->has_weight
                ? (real)((double)invstd[c] * (double)((const real *)a->weight)[c]) : invstd[c];
        if (cols) FN(bn_expand)(chan, coef, 1, C, S);
        FNN_FOR_STATIC(nt, tile, p.ntiles,
            FN(bn_eval_grad_tile)(&p, tile, dy, x, dx, N, C, S, coef, a->has_weight,
                                  mean_cols, mean, s_dy, s_dyx););
        if (a->has_weight) {
            bn_plan folded = bn_fold_slots(&p, s_dy, s_dyx, C, S, nt);
            for (int64_t c = 0; c < C; c++) {
                double t1, t2;
                bn_channel_totals(&folded, s_dy, s_dyx, C, S, c, &t1, &t2);
                ((real *)a->dweight)[c] = (real)((double)invstd[c] * t2);
                ((real *)a->dbias)[c] = (real)t1;
            }
        }
    }
    free(chan); free(s_dy); free(s_dyx);
    return 0;
}
