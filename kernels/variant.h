/* The body of one instruction-set variant (variant_*.c): every kernel
   family compiled for float32 and float64, and the variant's table.
   Before including: FNN_VARIANT_TABLE, the table's name. */

#define FNN_REAL_F32
#include "template.h"
#include "batchnorm.c"
#include "softmax.c"
#include "linear.c"
#include "optim.c"
#undef FNN_REAL_F32

#define FNN_REAL_F64
#include "template.h"
#include "batchnorm.c"
#include "softmax.c"
#include "linear.c"
#include "optim.c"
#undef FNN_REAL_F64

#define FNN_TABLE_ENTRY(t) { \
    batchnorm_forward_##t, batchnorm_backward_##t, softmax_##t, cross_entropy_##t, \
    bias_relu_##t, relu_mask_dbias_##t, sgd_step_##t, adam_step_##t, \
    exp_nonpositive_##t }

const fnn_kernels FNN_VARIANT_TABLE[2] = { FNN_TABLE_ENTRY(f32), FNN_TABLE_ENTRY(f64) };
