"""LLVM intrinsics the numba kernels call, each a single instruction or two.

- ``fma(a, b, c)``: ``a*b + c`` rounded once (``llvm.fma``).
- ``maximum(a, b)``: IEEE maximum (``llvm.maximum``), NaN-propagating, whose
  running reduction LLVM vectorizes without fast-math flags.
- ``prefetch(X, i, j)``: ask the cache to fetch the line holding ``X[i, j]``
  (``llvm.prefetch``, a hint: it never faults and changes no value).  A row
  kernel that computes on a row already in cache (the exp of a softmax row)
  prefetches the next row meanwhile, so memory keeps streaming while the
  core computes instead of the two taking turns.

Callable from jitted code only.
"""

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def fma(typingctx, a, b, c):
    """``a*b + c`` with one rounding, as the ``llvm.fma`` intrinsic."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        llty = args[0].type
        suffix = "f64" if llty == ir.DoubleType() else "f32"
        fnty = ir.FunctionType(llty, [llty, llty, llty])
        fn = cgutils.get_or_insert_function(builder.module, fnty,
                                            "llvm.fma." + suffix)
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def maximum(typingctx, a, b):
    """IEEE maximum (``llvm.maximum``): NaN if either is NaN, -0 < +0.

    A running ``m = maximum(m, x[j])`` is exactly associative, so LLVM
    vectorizes that reduction without fast-math flags; the usual
    ``x if x > m else m`` stays a scalar chain unless ``nnan`` is allowed.
    """
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, signature, args):
        llty = args[0].type
        suffix = "f64" if llty == ir.DoubleType() else "f32"
        fnty = ir.FunctionType(llty, [llty, llty])
        fn = cgutils.get_or_insert_function(builder.module, fnty,
                                            "llvm.maximum." + suffix)
        return builder.call(fn, args)

    return a(a, b), codegen


@intrinsic
def prefetch(typingctx, X, i, j):
    """Prefetch the cache line of ``X[i, j]`` (a 2-D array) for reading."""
    if not (isinstance(X, types.Array) and X.ndim == 2
            and isinstance(i, types.Integer) and isinstance(j, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        index = [context.cast(builder, value, kind, types.intp)
                 for value, kind in zip(args[1:], signature.args[1:])]
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, index,
                                           wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read (0), keep in all cache levels (locality 3), data cache (1)
        builder.call(fn, [builder.bitcast(pointer, byte_pointer), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(X, i, j), codegen
