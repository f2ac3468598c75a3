/* The AVX2 + FMA variant (Haswell and later, Zen 1-3): 256-bit vectors. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx2,fma,bmi,bmi2,popcnt")
#define FNN_VARIANT_TABLE fnn_kernels_avx2
#include "variant.h"
#else
#include "internal.h"
const fnn_kernels fnn_kernels_avx2[2];       /* never selected off x86-64 */
#endif
