"""LLVM intrinsics the numba kernels call, each a single instruction or two.

- ``fma(a, b, c)``: ``a*b + c`` rounded once (``llvm.fma``).
- ``maximum(a, b)``: IEEE maximum (``llvm.maximum``), NaN-propagating, whose
  running reduction LLVM vectorizes without fast-math flags.
- ``prefetch(X, i, j)``: ask the cache to fetch the line holding ``X[i, j]``
  (``llvm.prefetch``, a hint: it never faults and changes no value).  A row
  kernel that computes on a row already in cache (the exp of a softmax row)
  prefetches the next row meanwhile, so memory keeps streaming while the
  core computes instead of the two taking turns.
- ``stream_affine`` and ``stream_grad_input``: one 32-byte vector of a batch-norm
  output row computed and written with a non-temporal ("streaming") store,
  which goes to memory without first reading the line into cache: a
  plain store of a large output reads every line it writes (read for
  ownership), a third more traffic on a pass that reads one array and
  writes one.  ``store_fence()`` orders those stores before whatever
  follows (``sfence`` on x86); every tile that streams ends with one.
  (Measured in docs/PERFORMANCE.md, "Batch norm".)  The arithmetic is the scalar code's,
  operation by operation (no contraction into fma), so results are the
  same bits.

Also ``entry(v, i)``: ``v[i]`` for a 1-D array, ``v`` for a scalar, so one
loop serves per-column and per-channel coefficients.

Callable from jitted code only.
"""

import platform

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload


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


# --- streaming stores ---------------------------------------------------------

STREAM_BYTES = 32       # one vector per streaming store; the address must be aligned to it
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _stream_vector_type(array_type):
    dtype = array_type.dtype
    lltype = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
    return ir.VectorType(lltype, STREAM_BYTES // (4 if dtype == types.float32 else 8))


def _row_pointer(context, builder, array_type, array, n, j):
    index = [context.cast(builder, n[0], n[1], types.intp),
             context.cast(builder, j[0], j[1], types.intp)]
    made = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, made, index,
                                    wraparound=False)


def _vector_operand(context, builder, kind, value, at, vector_type):
    """An operand as a vector: 8 (or 4) consecutive entries of a 1-D array
    from index ``at``, or a scalar repeated."""
    if isinstance(kind, types.Array):
        made = context.make_array(kind)(context, builder, value)
        index = [context.cast(builder, at[0], at[1], types.intp)]
        pointer = cgutils.get_item_pointer(context, builder, kind, made, index,
                                           wraparound=False)
        return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1)
    scalar = context.cast(builder, value, kind, kind)
    lanes = vector_type.count
    undefined = ir.Constant(vector_type, ir.Undefined)
    first = builder.insert_element(undefined, scalar, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
    return builder.shuffle_vector(first, undefined, mask)


def _load_row_vector(context, builder, array_type, array, n, j, vector_type):
    pointer = _row_pointer(context, builder, array_type, array, n, j)
    return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1)


def _stream_store(context, builder, array_type, array, n, j, vector):
    pointer = _row_pointer(context, builder, array_type, array, n, j)
    store = builder.store(vector, builder.bitcast(pointer, vector.type.as_pointer()),
                          align=STREAM_BYTES)
    store.set_metadata("nontemporal",
                       builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


def _coefficient_ok(kind, dtype):
    return kind == dtype or (isinstance(kind, types.Array) and kind.ndim == 1
                             and kind.dtype == dtype)


@intrinsic
def stream_affine(typingctx, Y, n, j, X, center, scale, offset, at):
    """Y[n, j:j+L] = (X[n, j:j+L] - center) * scale + offset, streamed
    (L = 32 bytes of Y's dtype; Y[n, j] 32-byte aligned).  Each coefficient
    is a scalar or a 1-D array read from index ``at`` on."""
    if not (isinstance(Y, types.Array) and Y.ndim == 2 and Y.dtype in (types.float32, types.float64)
            and isinstance(X, types.Array) and X.dtype == Y.dtype
            and all(_coefficient_ok(k, Y.dtype) for k in (center, scale, offset))):
        return None

    def codegen(context, builder, signature, args):
        kinds = signature.args
        vt = _stream_vector_type(kinds[0])
        n_, j_, at_ = (args[1], kinds[1]), (args[2], kinds[2]), (args[7], kinds[7])
        x = _load_row_vector(context, builder, kinds[3], args[3], n_, j_, vt)
        c, s, o = (_vector_operand(context, builder, kinds[k], args[k], at_, vt)
                   for k in (4, 5, 6))
        y = builder.fadd(builder.fmul(builder.fsub(x, c), s), o)
        _stream_store(context, builder, kinds[0], args[0], n_, j_, y)
        return context.get_dummy_value()

    return types.void(Y, n, j, X, center, scale, offset, at), codegen


@intrinsic
def stream_grad_input(typingctx, DX, n, j, DY, X, dy_center, k1, x_center, k2, t, at):
    """DX[n, j:j+L] = (DY - dy_center) * k1 + (X - x_center) * k2 + t on
    row n from column j, streamed; coefficients as in ``stream_affine``."""
    if not (isinstance(DX, types.Array) and DX.ndim == 2
            and DX.dtype in (types.float32, types.float64)
            and all(isinstance(a, types.Array) and a.dtype == DX.dtype for a in (DY, X))
            and all(_coefficient_ok(k, DX.dtype) for k in (dy_center, k1, x_center, k2, t))):
        return None

    def codegen(context, builder, signature, args):
        kinds = signature.args
        vt = _stream_vector_type(kinds[0])
        n_, j_, at_ = (args[1], kinds[1]), (args[2], kinds[2]), (args[10], kinds[10])
        g = _load_row_vector(context, builder, kinds[3], args[3], n_, j_, vt)
        x = _load_row_vector(context, builder, kinds[4], args[4], n_, j_, vt)
        dc, a, xc, b, t_ = (_vector_operand(context, builder, kinds[k], args[k], at_, vt)
                            for k in (5, 6, 7, 8, 9))
        first = builder.fmul(builder.fsub(g, dc), a)
        second = builder.fmul(builder.fsub(x, xc), b)
        dx = builder.fadd(builder.fadd(first, second), t_)
        _stream_store(context, builder, kinds[0], args[0], n_, j_, dx)
        return context.get_dummy_value()

    return (types.void(DX, n, j, DY, X, dy_center, k1, x_center, k2, t, at), codegen)


@intrinsic
def store_fence(typingctx):
    """Order the streaming stores issued so far before any later store
    (``sfence`` on x86; a sequentially consistent fence elsewhere)."""
    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


def entry(v, i):
    """v[i] for an array, v itself for a scalar (jitted code only)."""
    return v[i] if hasattr(v, "__getitem__") else v


@overload(entry)
def _entry_overload(v, i):
    if isinstance(v, types.Array):
        return lambda v, i: v[i]
    return lambda v, i: v
