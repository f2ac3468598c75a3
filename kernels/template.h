/* Included by variant.h once per dtype, before the kernel families: `real`
   and the names, exp and stores that depend on it and on the instruction
   set the including variant compiles for (variant_*.c).

   Before including: FNN_REAL_F32 or FNN_REAL_F64.  Functions are named
   FN(name), i.e. name_f32 or name_f64, and are static to the variant. */

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#undef real
#undef FN
#undef FNN_SQRT
#undef FNN_FMA
#undef FNN_STREAM_LANES

#if defined(FNN_REAL_F32)
#define real float
#define FN(name) name##_f32
#define FNN_SQRT sqrtf
#if defined(__FMA__)
#define FNN_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
#endif
#elif defined(FNN_REAL_F64)
#define real double
#define FN(name) name##_f64
#define FNN_SQRT sqrt
#if defined(__FMA__)
#define FNN_FMA(a, b, c) __builtin_fma((a), (b), (c))
#endif
#else
#error "define FNN_REAL_F32 or FNN_REAL_F64 before including template.h"
#endif

/* Without FMA hardware a multiply-add rounds twice (a software fma would
   cost a library call per element); the exp's error bound allows for it. */
#ifndef FNN_FMA
#define FNN_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Streaming (non-temporal) stores of one vector: FNN_STREAM_BYTES at an
   address aligned to it.  0 where the instruction set has none. */
#ifndef FNN_STREAM_BYTES
#if defined(__AVX512F__)
#define FNN_STREAM_BYTES 64
#elif defined(__AVX__)
#define FNN_STREAM_BYTES 32
#elif defined(__SSE2__)
#define FNN_STREAM_BYTES 16
#else
#define FNN_STREAM_BYTES 0
#endif
#endif

#define FNN_STREAM_LANES (FNN_STREAM_BYTES ? FNN_STREAM_BYTES / (int)sizeof(real) : 1)

/* dst[0:FNN_STREAM_LANES] = src[...] with a streaming store; dst aligned. */
static inline void FN(stream_vector)(real *dst, const real *src) {
#if defined(FNN_REAL_F32) && FNN_STREAM_BYTES == 64
    _mm512_stream_ps(dst, _mm512_loadu_ps(src));
#elif defined(FNN_REAL_F64) && FNN_STREAM_BYTES == 64
    _mm512_stream_pd(dst, _mm512_loadu_pd(src));
#elif defined(FNN_REAL_F32) && FNN_STREAM_BYTES == 32
    _mm256_stream_ps(dst, _mm256_loadu_ps(src));
#elif defined(FNN_REAL_F64) && FNN_STREAM_BYTES == 32
    _mm256_stream_pd(dst, _mm256_loadu_pd(src));
#elif defined(FNN_REAL_F32) && FNN_STREAM_BYTES == 16
    _mm_stream_ps(dst, _mm_loadu_ps(src));
#elif defined(FNN_REAL_F64) && FNN_STREAM_BYTES == 16
    _mm_stream_pd(dst, _mm_loadu_pd(src));
#else
    dst[0] = src[0];
#endif
}

/* Elements from dst to the next FNN_STREAM_BYTES boundary (at most n). */
static inline int64_t FN(stream_head)(const real *dst, int64_t n) {
    if (!FNN_STREAM_BYTES) return n;
    int64_t head = (int64_t)(((uintptr_t)0 - (uintptr_t)dst) % (FNN_STREAM_BYTES ? FNN_STREAM_BYTES : 1))
                   / (int64_t)sizeof(real);
    return head < n ? head : n;
}

#ifndef FNN_STORE_FENCE
#define FNN_STORE_FENCE
static inline void fnn_store_fence(void) {
#if FNN_STREAM_BYTES
    _mm_sfence();
#endif
}
#endif

/* exp(x) for x <= 0 (and -inf, NaN), branch-free so that loops of it
   vectorize.  The method:
     k = nearest integer to x / ln2   (x * log2(e) plus 1.5 * 2^p, p the
                                       mantissa bits, leaves k in the low bits)
     r = x - k ln2                    (ln2 split hi + lo, k hi exact)
     exp(r) = 1 + t, t = r + r^2 q(r) (q a near-minimax polynomial on
                                       [-ln2/2, ln2/2], Estrin's scheme)
     exp(x) = 2^k + 2^k t             (one multiply-add)
   2^k is formed as the normal number 2^(k + raise) from the bits of the
   shifted sum, then times 2^-raise (exact, also when 2^k is subnormal).
   x below the underflow threshold is clamped to it (the result is then 0);
   NaN passes the clamp (x < lo is false) and every step after it.
   Accuracy: tests/test_c_exp.py (<= 2 ulp over the whole range x <= 0). */
#if defined(FNN_REAL_F32)
static inline float vexp_nonpositive_f32(float x) {
    const float log2e = 1.44269504088896341f, magic = 12582912.0f; /* 1.5 * 2^23 */
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    x = x < -104.0f ? -104.0f : x;
    float shifted = FNN_FMA(x, log2e, magic);
    float k = shifted - magic;
    float r = FNN_FMA(-k, ln2_hi, x);
    r = FNN_FMA(-k, ln2_lo, r);
    float r2 = r * r;
    float q01 = FNN_FMA(0.16666577756404877f, r, 0.5f);
    float q23 = FNN_FMA(0.008363173343241215f, r, 0.041666556149721146f);
    float q = FNN_FMA(FNN_FMA(0.0013926175888627768f, r2, q23), r2, q01);
    float t = FNN_FMA(r2, q, r);
    uint32_t bits;
    __builtin_memcpy(&bits, &shifted, 4);
    bits = (bits + (uint32_t)(127 + 24)) << 23;          /* 2^(k + 24) */
    float scale;
    __builtin_memcpy(&scale, &bits, 4);
    scale *= 5.9604644775390625e-8f;                     /* 2^-24 */
    return FNN_FMA(scale, t, scale);
}
#else
static inline double vexp_nonpositive_f64(double x) {
    const double log2e = 1.4426950408889634, magic = 6755399441055744.0; /* 1.5 * 2^52 */
    const double ln2_hi = 0.6931471803691238, ln2_lo = 1.9082149292705877e-10;
    x = x < -746.0 ? -746.0 : x;
    double shifted = FNN_FMA(x, log2e, magic);
    double k = shifted - magic;
    double r = FNN_FMA(-k, ln2_hi, x);
    r = FNN_FMA(-k, ln2_lo, r);
    double r2 = r * r, r4 = r2 * r2;
    double q01 = FNN_FMA(0.16666666666666669, r, 0.5000000000000001);
    double q23 = FNN_FMA(0.008333333333330065, r, 0.041666666666624164);
    double q45 = FNN_FMA(0.00019841269863040545, r, 0.0013888888917196719);
    double q67 = FNN_FMA(2.7557268480310024e-06, r, 2.4801521322368692e-05);
    double q89 = FNN_FMA(2.5100375832561234e-08, r, 2.7620075879983367e-07);
    double q03 = FNN_FMA(q23, r2, q01);
    double q47 = FNN_FMA(q67, r2, q45);
    double q07 = FNN_FMA(q47, r4, q03);
    double q = FNN_FMA(q89, r4 * r4, q07);
    double t = FNN_FMA(r2, q, r);
    uint64_t bits;
    __builtin_memcpy(&bits, &shifted, 8);
    bits = (bits + (uint64_t)(1023 + 55)) << 52;         /* 2^(k + 55) */
    double scale;
    __builtin_memcpy(&scale, &bits, 8);
    scale *= 2.7755575615628914e-17;                     /* 2^-55 */
    return FNN_FMA(scale, t, scale);
}
#endif
