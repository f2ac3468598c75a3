/* The baseline variant: what the compiler targets by default (SSE2 on
   x86-64), so it runs on any CPU of the architecture. */
#define FNN_VARIANT_TABLE fnn_kernels_baseline
#include "variant.h"
