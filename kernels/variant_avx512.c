/* The AVX-512 variant (Skylake-SP and later, Zen 4): 512-bit vectors. */
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2,popcnt,prefer-vector-width=512")
#define FNN_VARIANT_TABLE fnn_kernels_avx512
#include "variant.h"
#else
#include "internal.h"
const fnn_kernels fnn_kernels_avx512[2];     /* never selected off x86-64 */
#endif
