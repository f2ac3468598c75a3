/* The functions of fastnn.h: set-up, the run-time settings, and each
   kernel's entry point, which reads its arrays' data pointers and shapes
   from the NumPy array objects and calls the selected variant. */

#include "internal.h"
#include "fastnn.h"

/* Defined by the build (fastnn/_backends/c/_build.py): the compiler flags. */
extern const char fnn_build_flags_text[];

_Thread_local int fnn_failed = 0;
int fnn_threads = 1;
int64_t fnn_stream_min_bytes = ((int64_t)8 << 20) + 1;
int64_t fnn_channel_cache_bytes = (int64_t)1 << 20;

static const fnn_kernels *fnn_table = fnn_kernels_baseline;
static const char *fnn_isa = "baseline";


/* ---- NumPy array objects --------------------------------------------------
   An ndarray object holds, after Python's object header, its data pointer,
   then its number of dimensions (int) and a pointer to its extents
   (npy_intp[ndim]): NumPy's PyArrayObject_fields, unchanged since NumPy 1.7
   and in NumPy 2.  fnn_setup finds the data pointer's offset on a probe
   array whose address, data pointer and shape Python gives, and checks the
   dimension count and extents after it; a mismatch makes the set-up fail
   (the backend is then unavailable), never a wrong read later. */

static size_t fnn_data_at = 0;

int fnn_setup(uintptr_t probe, uintptr_t probe_data, int probe_ndim,
              int64_t probe_dim0, int64_t probe_dim1) {
    if (sizeof(intptr_t) != sizeof(int64_t) || probe_ndim != 2) return 1;
    for (size_t at = sizeof(void *); at <= 8 * sizeof(void *); at += sizeof(void *)) {
        if (*(const uintptr_t *)(probe + at) != probe_data) continue;
        if (*(const int *)(probe + at + sizeof(void *)) != probe_ndim) continue;
        const int64_t *dims = *(const int64_t *const *)(probe + at + 2 * sizeof(void *));
        if (dims[0] == probe_dim0 && dims[1] == probe_dim1) {
            fnn_data_at = at;
            return 0;
        }
    }
    return 1;
}

static inline void *arr_data(uintptr_t a) {
    return *(void *const *)(a + fnn_data_at);
}
static inline const int64_t *arr_dims(uintptr_t a) {
    return *(const int64_t *const *)(a + fnn_data_at + 2 * sizeof(void *));
}
static inline int64_t arr_size(uintptr_t a) {
    int nd = *(const int *)(a + fnn_data_at + sizeof(void *));
    const int64_t *d = arr_dims(a);
    int64_t n = 1;
    for (int k = 0; k < nd; k++) n *= d[k];
    return n;
}
/* An optional array's data, NULL for the zero-length stand-in. */
static inline void *arr_optional(uintptr_t a) {
    return arr_size(a) ? arr_data(a) : NULL;
}


/* ---- instruction sets ------------------------------------------------------ */

static int fnn_cpu_has(const char *name) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
               && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
               && __builtin_cpu_supports("bmi2");
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
               && __builtin_cpu_supports("bmi2");
#endif
    return !strcmp(name, "baseline");
}

int fnn_select_isa(const char *name) {
    static const char *order[] = {"avx512", "avx2", "baseline"};
    static const fnn_kernels *tables[] = {fnn_kernels_avx512, fnn_kernels_avx2,
                                          fnn_kernels_baseline};
    int automatic = !name || !*name || !strcmp(name, "auto");
    for (int k = 0; k < 3; k++) {
        if (!automatic && strcmp(name, order[k])) continue;
        if (!fnn_cpu_has(order[k])) {
            if (automatic) continue;
            return 2;           /* known, but this CPU lacks it */
        }
        fnn_table = tables[k];
        fnn_isa = order[k];
        return 0;
    }
    return 1;                   /* unknown name */
}

const char *fnn_isa_name(void) { return fnn_isa; }

const char *fnn_supported_isas(void) {
    static char text[32];
    text[0] = 0;
    if (fnn_cpu_has("avx512")) strcat(text, "avx512,");
    if (fnn_cpu_has("avx2")) strcat(text, "avx2,");
    strcat(text, "baseline");
    return text;
}

const char *fnn_build_flags(void) { return fnn_build_flags_text; }

int fnn_openmp_version(void) {
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

void fnn_set_num_threads(int n) { fnn_threads = n > 0 ? n : 1; }
int fnn_get_num_threads(void) { return fnn_threads; }

void fnn_set_cache_bytes(int64_t last_level) {
    fnn_stream_min_bytes = last_level + 1;
    fnn_channel_cache_bytes = last_level / 8;
}

int fnn_last_failed(void) { return fnn_failed; }


/* ---- kernels ------------------------------------------------------------------ */

int fnn_batchnorm_forward(uintptr_t x, uintptr_t weight, uintptr_t bias,
                          uintptr_t running_mean, uintptr_t running_var,
                          uintptr_t y, uintptr_t mean, uintptr_t invstd,
                          int dtype, int flags, double momentum, double eps) {
    fnn_bn_forward_args a;
    const int64_t *d = arr_dims(x);
    a.N = d[0]; a.C = d[1]; a.S = d[2];
    a.x = arr_data(x);
    a.weight = arr_optional(weight);
    a.bias = arr_optional(bias);
    a.running_mean = arr_optional(running_mean);
    a.running_var = arr_optional(running_var);
    a.has_weight = a.weight != NULL;
    a.has_bias = a.bias != NULL;
    a.has_running_mean = a.running_mean != NULL;
    a.has_running_var = a.running_var != NULL;
    a.training = flags & 1;
    a.momentum = momentum;
    a.eps = eps;
    a.y = arr_data(y);
    a.mean = arr_data(mean);
    a.invstd = arr_data(invstd);
    return fnn_table[dtype & 1].batchnorm_forward(&a);
}

int fnn_batchnorm_backward(uintptr_t dy, uintptr_t x, uintptr_t weight,
                           uintptr_t mean, uintptr_t invstd, uintptr_t dx,
                           uintptr_t dweight, uintptr_t dbias, int dtype, int flags) {
    fnn_bn_backward_args a;
    const int64_t *d = arr_dims(x);
    a.N = d[0]; a.C = d[1]; a.S = d[2];
    a.dy = arr_data(dy);
    a.x = arr_data(x);
    a.weight = arr_optional(weight);
    a.has_weight = a.weight != NULL;
    a.mean = arr_data(mean);
    a.invstd = arr_data(invstd);
    a.training = flags & 1;
    a.dx = arr_data(dx);
    a.dweight = arr_optional(dweight);
    a.dbias = arr_optional(dbias);
    return fnn_table[dtype & 1].batchnorm_backward(&a);
}

int fnn_softmax(uintptr_t x, uintptr_t y, int dtype, int log) {
    fnn_softmax_args a;
    const int64_t *d = arr_dims(x);
    a.R = d[0]; a.L = d[1];
    a.x = arr_data(x);
    a.y = arr_data(y);
    a.log = log;
    return fnn_table[dtype & 1].softmax(&a);
}

double fnn_cross_entropy(uintptr_t logits, uintptr_t labels, uintptr_t probs,
                         uintptr_t weight, int64_t ignore_index, int reduction,
                         double label_smoothing, double grad_loss, uintptr_t grad_rows,
                         uintptr_t dlogits, uintptr_t losses, int dtype, int flags) {
    fnn_ce_args a;
    const int64_t *d = arr_dims(logits);
    a.N = d[0]; a.C = d[1];
    a.logits = arr_data(logits);
    a.labels = (const int64_t *)arr_optional(labels);
    a.probs = a.labels ? NULL : arr_data(probs);
    a.weight = arr_optional(weight);
    a.ignore_index = ignore_index;
    a.reduction = reduction;
    a.label_smoothing = label_smoothing;
    a.grad_loss = grad_loss;
    a.grad_rows = flags & 2 ? arr_data(grad_rows) : NULL;
    a.dlogits = flags & 1 ? arr_data(dlogits) : NULL;
    a.losses = arr_optional(losses);
    fnn_failed = 0;
    return fnn_table[dtype & 1].cross_entropy(&a);
}

int fnn_bias_relu(uintptr_t y, uintptr_t bias, int dtype, int relu) {
    fnn_bias_relu_args a;
    const int64_t *d = arr_dims(y);
    a.N = d[0]; a.M = d[1];
    a.y = arr_data(y);
    a.bias = arr_optional(bias);
    a.relu = relu;
    return fnn_table[dtype & 1].bias_relu(&a);
}

int fnn_relu_mask_dbias(uintptr_t dy, uintptr_t y, uintptr_t dz, uintptr_t dbias,
                        int dtype, int relu) {
    fnn_relu_mask_args a;
    const int64_t *d = arr_dims(dy);
    a.N = d[0]; a.M = d[1];
    a.dy = arr_data(dy);
    a.y = relu ? arr_data(y) : NULL;
    a.dz = relu ? arr_data(dz) : NULL;
    a.dbias = arr_optional(dbias);
    return fnn_table[dtype & 1].relu_mask_dbias(&a);
}

int fnn_sgd_step(uintptr_t param, uintptr_t grad, uintptr_t momentum_buffer,
                 int dtype, double lr, double momentum, double dampening,
                 int nesterov, double weight_decay, int first_step) {
    fnn_sgd_args a;
    a.P = arr_size(param);
    a.param = arr_data(param);
    a.grad = arr_data(grad);
    a.buffer = arr_optional(momentum_buffer);
    a.lr = lr; a.momentum = momentum; a.dampening = dampening;
    a.weight_decay = weight_decay; a.nesterov = nesterov; a.first_step = first_step;
    return fnn_table[dtype & 1].sgd_step(&a);
}

int fnn_adam_step(uintptr_t param, uintptr_t grad, uintptr_t exp_avg,
                  uintptr_t exp_avg_sq, int dtype, int64_t step, double lr,
                  double beta1, double beta2, double eps, double weight_decay,
                  int decoupled) {
    fnn_adam_args a;
    a.P = arr_size(param);
    a.step = step;
    a.param = arr_data(param);
    a.grad = arr_data(grad);
    a.exp_avg = arr_data(exp_avg);
    a.exp_avg_sq = arr_data(exp_avg_sq);
    a.lr = lr; a.beta1 = beta1; a.beta2 = beta2; a.eps = eps;
    a.weight_decay = weight_decay; a.decoupled = decoupled;
    return fnn_table[dtype & 1].adam_step(&a);
}

int fnn_exp_nonpositive(uintptr_t x, uintptr_t y, int dtype) {
    return fnn_table[dtype & 1].exp_nonpositive(arr_data(x), arr_data(y), arr_size(x));
}
