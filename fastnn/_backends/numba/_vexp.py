"""A vectorizable exp for Numba loops, float32 and float64.

Why it exists: the llvmlite wheels carry no SVML, so ``math.exp`` inside a
Numba loop stays a scalar libm call, and the softmax kernels spend most of
their time in it (docs/PERFORMANCE.md).  The functions here use
only operations LLVM can put in vector registers - multiply-adds, compares
that become min/max, integer adds and shifts on a float's bits - with no
branch and no call, so once inlined into a loop the loop vectorizer turns
them into AVX2/AVX-512 code (checked with ``inspect_asm``: ``vfmadd...ps``
on ``ymm`` registers, no ``call``).

The method (Cody-Waite reduction, a polynomial, a power of two):

    k = rint(x / ln2)                 # by adding the "magic" 1.5 * 2**p
    r = x - k*ln2                     # ln2 = hi + lo, |r| <= ln2/2
    exp(r) ~= 1 + t, t = r + r**2 q(r)   # q: near-minimax (Chebyshev) fit,
                                         # evaluated by Estrin's scheme
    exp(x) = 2**k + 2**k * t          # one fma: a single rounding

2**k is built from the bits of k, in a way that keeps every intermediate a
normal number, so results in the subnormal range are still rounded once.
The polynomial uses Estrin's scheme rather than Horner's: a vector loop of
exp is bound by the depth of its dependency chain (the out-of-order window
holds only a few iterations), and Estrin halves that depth.  Inputs are
clamped first in a way that lets NaN through (``x < lo`` is false for NaN):
``-inf`` and anything below the underflow threshold give exactly 0, NaN
gives NaN, and no step makes a NaN from a non-NaN.

``vexp_nonpositive(x)`` is for x <= 0 (and -inf, NaN): what softmax needs,
as it exponentiates ``x - max``.  One clamp, and 2**k made as the normal
number 2**(k + raise) times the constant 2**-raise (exact, also when 2**k
is subnormal), off the critical path: 20 vector instructions per 8 float32
values.  No upper clamp: wrong for large positive x.  It is generic over
float32/float64 (a Numba ``overload`` picks ``exp_nonpositive_f32``/``_f64``
at compile time) and callable from jitted code only.  The
float32 versions compute in float32 - every float32 constant below is a
``np.float32``, as a Python float would promote the arithmetic to float64.

Accuracy, measured against ``np.exp`` in 80-bit long double over the whole
range x <= 0 (tests/test_numba_exp.py): at most 1.10 ulp for float64 and
1.06 ulp for float32, at most one unit of the smallest subnormal in the
subnormal range; exactly 0 for -inf, NaN for NaN.

``fma`` comes from ``_intrinsics.py``, with the other LLVM building blocks.
"""

import math

import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

from ._intrinsics import fma
from ._jit import jit


# --- LLVM building blocks -------------------------------------------------

def _make_pow2_intrinsic(raise_f64, raise_f32):
    """An intrinsic giving 2**(k + raise) from ``shifted = k + 1.5*2**p``.

    Adding the magic 1.5*2**p (p = 52 or 23 mantissa bits) to an integral
    float k leaves k in the low mantissa bits; adding the exponent bias and
    shifting those bits into the exponent field gives the float 2**k.  It is
    written in LLVM IR so that the integer work stays at the float's width
    (Numba would widen int32 arithmetic to int64 and break vectorization).
    """
    @intrinsic
    def pow2_from_shifted(typingctx, shifted):
        if not isinstance(shifted, types.Float):
            return None

        def codegen(context, builder, signature, args):
            llty = args[0].type
            if llty == ir.DoubleType():
                intty, bias, mantissa_bits = ir.IntType(64), 1023 + raise_f64, 52
            else:
                intty, bias, mantissa_bits = ir.IntType(32), 127 + raise_f32, 23
            bits = builder.bitcast(args[0], intty)
            bits = builder.add(bits, ir.Constant(intty, bias))
            bits = builder.shl(bits, ir.Constant(intty, mantissa_bits))
            return builder.bitcast(bits, llty)

        return shifted(shifted), codegen

    return pow2_from_shifted


# k is in [-1077, 0] (float64) or [-150, 0] (float32), so
# 2**(k + raise) is a normal number for every k.
_RAISE_64 = 55
_RAISE_32 = 24
_pow2_raised_from_shifted = _make_pow2_intrinsic(_RAISE_64, _RAISE_32)


# --- float64 constants -----------------------------------------------------

_LOG2E_64 = 1.4426950408889634
_MAGIC_64 = 6755399441055744.0          # 1.5 * 2**52
_LN2_HI_64 = 0.6931471803691238         # 0x1.62e42fee00000p-1: k*hi exact for |k| < 2**21
_LN2_LO_64 = 1.9082149292705877e-10     # ln2 - hi
_LOWEST_64 = -746.0                     # exp(x) < 2**-1075 (rounds to 0) below this
_UNRAISE_64 = 2.0 ** -_RAISE_64
# q(r) = (exp(r) - 1 - r) / r**2 on [-ln2/2, ln2/2], degree 9: error of the
# whole polynomial 1.3e-17 (0.06 ulp); mpmath.chebyfit at 50 digits.
_Q0_64 = 0.5000000000000001
_Q1_64 = 0.16666666666666669
_Q2_64 = 0.041666666666624164
_Q3_64 = 0.008333333333330065
_Q4_64 = 0.0013888888917196719
_Q5_64 = 0.00019841269863040545
_Q6_64 = 2.4801521322368692e-05
_Q7_64 = 2.7557268480310024e-06
_Q8_64 = 2.7620075879983367e-07
_Q9_64 = 2.5100375832561234e-08


@jit()
def _exp_reduced_f64(x):
    """(t, k + magic, k) with x = k*ln2 + r and exp(r) ~= 1 + t; x clamped.

    The polynomial is evaluated by Estrin's scheme (powers r**2, r**4,
    r**8 combine independent pairs): 5 multiply-adds deep instead of Horner's
    10, which matters because a vector loop of this is latency-bound - the
    out-of-order window holds only a few iterations of a long chain.
    """
    shifted = fma(x, _LOG2E_64, _MAGIC_64)
    k = shifted - _MAGIC_64
    r = fma(-k, _LN2_HI_64, x)
    r = fma(-k, _LN2_LO_64, r)
    r2 = r * r
    r4 = r2 * r2
    q01 = fma(_Q1_64, r, _Q0_64)
    q23 = fma(_Q3_64, r, _Q2_64)
    q45 = fma(_Q5_64, r, _Q4_64)
    q67 = fma(_Q7_64, r, _Q6_64)
    q89 = fma(_Q9_64, r, _Q8_64)
    q03 = fma(q23, r2, q01)
    q47 = fma(q67, r2, q45)
    q07 = fma(q47, r4, q03)
    q = fma(q89, r4 * r4, q07)
    # t = r + r**2 q, rounded once; 1 + t is added by the caller inside its
    # final multiply-add.
    return fma(r2, q, r), shifted, k


@jit()
def exp_nonpositive_f64(x):
    """exp(x) for float64 x <= 0 (or -inf, NaN), branch-free."""
    x = _LOWEST_64 if x < _LOWEST_64 else x
    t, shifted, _ = _exp_reduced_f64(x)
    # 2**(k + 55) is normal, and times 2**-55 it is 2**k exactly, a
    # subnormal for k < -1022.  For k = -1075 (x just above -745.13) 2**k
    # rounds to 0 where exp(x) would round to the smallest subnormal: an
    # error of one unit of 2**-1074, the only one outside fma's rounding.
    scale = _pow2_raised_from_shifted(shifted) * _UNRAISE_64
    return fma(scale, t, scale)


# --- float32 constants -----------------------------------------------------

_LOG2E_32 = np.float32(1.4426950408889634)
_MAGIC_32 = np.float32(12582912.0)       # 1.5 * 2**23
_LN2_HI_32 = np.float32(0.693359375)     # 355/512: k*hi exact for |k| < 2**15
_LN2_LO_32 = np.float32(-0.00021219444170128554)
_LOWEST_32 = np.float32(-104.0)          # exp(x) < 2**-150 (rounds to 0) below this
_UNRAISE_32 = np.float32(2.0 ** -_RAISE_32)
# q(r) of degree 4: polynomial error 7.8e-9 (0.07 ulp), coefficients
# rounded to float32.
_Q0_32 = np.float32(0.5)
_Q1_32 = np.float32(0.16666577756404877)
_Q2_32 = np.float32(0.041666556149721146)
_Q3_32 = np.float32(0.008363173343241215)
_Q4_32 = np.float32(0.0013926175888627768)


@jit()
def _exp_reduced_f32(x):
    """(t, k + magic, k) with x = k*ln2 + r and exp(r) ~= 1 + t; x clamped."""
    shifted = fma(x, _LOG2E_32, _MAGIC_32)
    k = shifted - _MAGIC_32
    r = fma(-k, _LN2_HI_32, x)
    r = fma(-k, _LN2_LO_32, r)
    r2 = r * r
    q01 = fma(_Q1_32, r, _Q0_32)
    q23 = fma(_Q3_32, r, _Q2_32)
    q = fma(fma(_Q4_32, r2, q23), r2, q01)
    return fma(r2, q, r), shifted, k


@jit()
def exp_nonpositive_f32(x):
    """exp(x) for float32 x <= 0 (or -inf, NaN), branch-free."""
    x = _LOWEST_32 if x < _LOWEST_32 else x
    t, shifted, _ = _exp_reduced_f32(x)
    scale = _pow2_raised_from_shifted(shifted) * _UNRAISE_32
    return fma(scale, t, scale)


# --- generic entry points ---------------------------------------------------

def vexp_nonpositive(x):
    """exp(x) for x <= 0; in jitted code, the cheaper branch-free version."""
    return math.exp(x)


@overload(vexp_nonpositive)
def _vexp_nonpositive_overload(x):
    if x == types.float64:
        return lambda x: exp_nonpositive_f64(x)
    if x == types.float32:
        return lambda x: exp_nonpositive_f32(x)
    return None
