/* What the kernel families share inside the C backend (not part of the
   interface Python sees, which is fastnn.h).

   Each family (batchnorm.c, softmax.c, linear.c, optim.c) is written once
   over a `real` type and compiled six times: float32 and float64, each for
   three instruction sets (variants.c: AVX-512, AVX2+FMA, baseline x86-64).
   A variant fills one fnn_kernels table; dispatch.c picks the table once,
   at set-up, from what the CPU supports (or FASTNN_C_ISA).

   Arguments reach a variant as a struct of plain pointers and extents:
   dispatch.c unpacks them from the NumPy array objects. */
#ifndef FASTNN_INTERNAL_H
#define FASTNN_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    int64_t N, C, S;
    const void *x, *weight, *bias;
    void *running_mean, *running_var;
    int has_weight, has_bias, has_running_mean, has_running_var, training;
    double momentum, eps;
    void *y, *mean, *invstd;
} fnn_bn_forward_args;

typedef struct {
    int64_t N, C, S;
    const void *dy, *x, *weight, *mean, *invstd;
    int has_weight, training;
    void *dx, *dweight, *dbias;
} fnn_bn_backward_args;

typedef struct {
    int64_t R, L;
    const void *x;
    void *y;
    int log;
} fnn_softmax_args;

enum { FNN_NONE = 0, FNN_SUM = 1, FNN_MEAN = 2 };

typedef struct {
    int64_t N, C;
    const void *logits;
    const int64_t *labels;          /* NULL for probability targets */
    const void *probs;              /* NULL for index targets */
    const void *weight;             /* NULL without class weights */
    int64_t ignore_index;
    int reduction;
    double label_smoothing, grad_loss;
    const void *grad_rows;          /* NULL: one scale, grad_loss */
    void *dlogits;                  /* NULL: no gradient */
    void *losses;                   /* NULL unless reduction is "none" */
} fnn_ce_args;

typedef struct {
    int64_t N, M;
    const void *bias;               /* NULL without bias */
    void *y;
    int relu;
} fnn_bias_relu_args;

typedef struct {
    int64_t N, M;
    const void *dy, *y;             /* y: NULL without ReLU */
    void *dz;                       /* written only with ReLU */
    void *dbias;                    /* NULL without bias */
} fnn_relu_mask_args;

typedef struct {
    int64_t P;
    void *param, *buffer;           /* buffer: NULL when momentum is 0 */
    const void *grad;
    double lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
} fnn_sgd_args;

typedef struct {
    int64_t P, step;
    void *param, *exp_avg, *exp_avg_sq;
    const void *grad;
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled;
} fnn_adam_args;

/* One variant: every kernel for one dtype and instruction set.  The int
   kernels return 0, or 1 when scratch memory could not be allocated (then
   fnn_failed is set too: cross_entropy returns NaN then). */
typedef struct {
    int (*batchnorm_forward)(const fnn_bn_forward_args *);
    int (*batchnorm_backward)(const fnn_bn_backward_args *);
    int (*softmax)(const fnn_softmax_args *);
    double (*cross_entropy)(const fnn_ce_args *);
    int (*bias_relu)(const fnn_bias_relu_args *);
    int (*relu_mask_dbias)(const fnn_relu_mask_args *);
    int (*sgd_step)(const fnn_sgd_args *);
    int (*adam_step)(const fnn_adam_args *);
    int (*exp_nonpositive)(const void *x, void *y, int64_t n);
} fnn_kernels;

/* The variants (variants.c); [0] float32, [1] float64. */
extern const fnn_kernels fnn_kernels_avx512[2];
extern const fnn_kernels fnn_kernels_avx2[2];
extern const fnn_kernels fnn_kernels_baseline[2];

/* Run-time settings (dispatch.c), read by the kernels. */
extern _Thread_local int fnn_failed;   /* out of memory in this thread's call */
extern int fnn_threads;                 /* fastnn.set_num_threads */
extern int64_t fnn_stream_min_bytes;    /* a pass streams its output from here */
extern int64_t fnn_channel_cache_bytes; /* channel at a time up to here */

/* Threads for a pass over `elements` values: one below the size where
   waking the pool pays off. */
#define FNN_PARALLEL_MIN_ELEMENTS ((int64_t)1 << 15)
static inline int fnn_threads_for(int64_t elements) {
    return elements >= FNN_PARALLEL_MIN_ELEMENTS && fnn_threads > 1 ? fnn_threads : 1;
}

/* for (int64_t var = 0; var < count; var++) { body }, over nt OpenMP threads
   (schedule static or dynamic, 1); with nt = 1 a plain loop, which does not
   enter the OpenMP runtime at all (about a microsecond saved per call). */
#ifdef _OPENMP
#define FNN_FOR_SCHEDULED(schedule, nt, var, count, ...) do { \
    if ((nt) > 1) { \
        _Pragma(schedule) \
        for (int64_t var = 0; var < (count); var++) { __VA_ARGS__ } \
    } else { \
        for (int64_t var = 0; var < (count); var++) { __VA_ARGS__ } \
    } } while (0)
#else
#define FNN_FOR_SCHEDULED(schedule, nt, var, count, ...) do { \
    for (int64_t var = 0; var < (count); var++) { __VA_ARGS__ } } while (0)
#endif
#define FNN_FOR_STATIC(nt, var, count, ...) FNN_FOR_SCHEDULED( \
    "omp parallel for schedule(static) num_threads(nt)", nt, var, count, __VA_ARGS__)
#define FNN_FOR_DYNAMIC(nt, var, count, ...) FNN_FOR_SCHEDULED( \
    "omp parallel for schedule(dynamic, 1) num_threads(nt)", nt, var, count, __VA_ARGS__)

static inline int64_t fnn_cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t fnn_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t fnn_max(int64_t a, int64_t b) { return a > b ? a : b; }

#endif
