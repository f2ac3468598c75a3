/* Optimizer steps, in place, in one pass over a parameter, its gradient
   and its state (1-D, P elements; the formulas are the NumPy reference's,
   fastnn/_backends/numpy/optim.py, i.e. torch.optim's SGD and Adam/AdamW).

   Arithmetic is in the arrays' dtype with every hyperparameter (and the
   bias corrections, computed in double) rounded to it first, as
   torch.optim's float32 arithmetic does.  Threads only from
   OPT_PARALLEL_MIN elements (waking a sleeping pool costs more than a
   smaller update), over fixed blocks; no element depends on another, so
   every thread count gives the same bits. */

#ifndef FNN_OPTIM_COMMON
#define FNN_OPTIM_COMMON
#define OPT_BLOCK ((int64_t)1 << 14)
#define OPT_PARALLEL_MIN ((int64_t)1 << 19)
static int fnn_optim_threads(int64_t P) { return P >= OPT_PARALLEL_MIN ? fnn_threads_for(P) : 1; }
#endif

static void FN(sgd_block)(const fnn_sgd_args *a, int64_t i0, int64_t i1) {
    real *p = (real *)a->param, *b = (real *)a->buffer;
    const real *g = (const real *)a->grad;
    const real lr = (real)a->lr, mom = (real)a->momentum, damped = (real)(1.0 - a->dampening);
    const real wd = (real)a->weight_decay;
    const int decay = a->weight_decay != 0.0;
    if (!b) {
        for (int64_t i = i0; i < i1; i++) {
            real step = decay ? g[i] + wd * p[i] : g[i];
            p[i] = p[i] - lr * step;
        }
        return;
    }
    for (int64_t i = i0; i < i1; i++) {
        real step = decay ? g[i] + wd * p[i] : g[i];
        real velocity = a->first_step ? step : mom * b[i] + damped * step;
        b[i] = velocity;
        step = a->nesterov ? step + mom * velocity : velocity;
        p[i] = p[i] - lr * step;
    }
}

static int FN(sgd_step)(const fnn_sgd_args *a) {
    int64_t blocks = fnn_cdiv(a->P, OPT_BLOCK);
    int nt = fnn_optim_threads(a->P);
    FNN_FOR_STATIC(nt, k, blocks,
        FN(sgd_block)(a, k * OPT_BLOCK, fnn_min(a->P, (k + 1) * OPT_BLOCK)););
    return 0;
}

static void FN(adam_block)(const fnn_adam_args *a, int64_t i0, int64_t i1) {
    real *p = (real *)a->param, *m = (real *)a->exp_avg, *v = (real *)a->exp_avg_sq;
    const real *g = (const real *)a->grad;
    const double steps = (double)a->step;
    const real step_size = (real)(a->lr / (1.0 - pow(a->beta1, steps)));
    const real bc2 = (real)sqrt(1.0 - pow(a->beta2, steps));
    const real b1 = (real)a->beta1, c1 = (real)(1.0 - a->beta1);
    const real b2 = (real)a->beta2, c2 = (real)(1.0 - a->beta2), eps = (real)a->eps;
    const int decoupled = a->decoupled && a->weight_decay != 0.0;
    const int l2 = !a->decoupled && a->weight_decay != 0.0;
    const real decay = decoupled ? (real)(1.0 - a->lr * a->weight_decay) : (real)a->weight_decay;
    for (int64_t i = i0; i < i1; i++) {
        real value = p[i], grad = g[i];
        if (decoupled) value = value * decay;
        else if (l2) grad = grad + decay * value;
        real first = b1 * m[i] + c1 * grad;
        real second = b2 * v[i] + c2 * (grad * grad);
        m[i] = first;
        v[i] = second;
        real denom = FNN_SQRT(second) / bc2 + eps;
        p[i] = value - step_size * (first / denom);
    }
}

static int FN(adam_step)(const fnn_adam_args *a) {
    int64_t blocks = fnn_cdiv(a->P, OPT_BLOCK);
    int nt = fnn_optim_threads(a->P);
    FNN_FOR_STATIC(nt, k, blocks,
        FN(adam_block)(a, k * OPT_BLOCK, fnn_min(a->P, (k + 1) * OPT_BLOCK)););
    return 0;
}
