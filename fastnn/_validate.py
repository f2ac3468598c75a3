"""Argument checks of the public API.

Every message starts with the argument's name, then says what was expected
and what was got: ``"weight: expected shape (16,), got (15,)"``.  Wrong
kinds of data (integer, bool or complex where floats are needed, float32
mixed with float64, non-arrays) raise TypeError; wrong shapes and values
raise ValueError.  Nothing here modifies an argument.
"""

import numbers
import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = FLOAT_DTYPES
_INT64 = np.dtype(np.int64)


def float_array(name, value, dtype=None):
    """``value`` as a float32/float64 ndarray; with ``dtype``, that one exactly."""
    array = value if type(value) is np.ndarray else np.asarray(value)
    if dtype is not None and array.dtype is dtype:
        return array            # the common case, decided without comparisons
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, "
                        f"got dtype {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of the "
                        f"call's first array), got {array.dtype}")
    return array


def optional_float_array(name, value, dtype, shape):
    if value is None:
        return None
    array = float_array(name, value, dtype)
    check_shape(name, array, shape)
    return array


def writable_array(name, value, dtype, shape):
    """An array the kernel writes into: it must be an ndarray already."""
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray that can be updated "
                        f"in place, got {type(value).__name__}")
    float_array(name, value, dtype)
    check_shape(name, value, shape)
    if not value.flags.writeable:
        raise ValueError(f"{name}: expected a writeable array, got a read-only one")
    return value


def check_shape(name, array, shape):
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")


def check_ndim(name, array, ndim, meaning):
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {meaning}, "
                         f"got shape {array.shape}")


def check_not_empty(name, array):
    if array.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {array.shape}")


def output_array(out, shape, dtype, allow=None, **inputs):
    """``out``, an array the kernel writes its result into: a writeable
    ndarray of ``shape`` and ``dtype`` whose elements do not overlap one
    another, sharing no memory with any of the named ``inputs`` (None
    entries are skipped) except ``allow``: the name of an input that ``out``
    may be exactly (the same elements in the same order)."""
    writable_array("out", out, dtype, shape)
    if not out.flags.c_contiguous and _self_overlapping(out):
        raise ValueError(f"out: expected an array whose elements do not overlap one "
                         f"another, got strides {out.strides} for shape {out.shape}")
    for name, array in inputs.items():
        if name == allow and array is not None and same_view(out, array):
            continue
        disjoint("out", out, name, array)
    return out


def disjoint(name, array, other_name, other):
    """ValueError naming both arguments when ``array`` and ``other`` share memory."""
    if other is None or type(other) is not np.ndarray:
        return
    if array is not other and array.flags.owndata and other.flags.owndata:
        return          # two arrays that each own their memory never overlap
    if np.may_share_memory(array, other) and _shares(array, other):
        raise ValueError(f"{name}: expected an array sharing no memory with {other_name}, "
                         f"got one that overlaps {other_name}")


def _shares(a, b):
    """Exact overlap test where it is cheap; undecidable cases count as overlap."""
    try:
        return np.shares_memory(a, b, max_work=10_000)
    except np.exceptions.TooHardError:
        return True


def _self_overlapping(a):
    """Could two elements of ``a`` be the same memory?  (A sufficient test of
    non-overlap: each axis, by increasing stride, steps past everything the
    smaller axes span.  Zero strides from np.broadcast_to fail it.)"""
    span = a.itemsize
    for stride, n in sorted((abs(s), n) for s, n in zip(a.strides, a.shape) if n > 1):
        if stride < span:
            return True
        span += stride * (n - 1)
    return False


def same_view(a, b):
    """``a`` and ``b`` are the very same elements in the same order."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides)


def flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def real(name, value, low=None, high=None):
    """A real number, optionally within [low, high]; returned as a Python float."""
    if type(value) is not float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a real number, got {value!r}")
        value = float(value)
    too_low = low is not None and not value >= low
    too_high = high is not None and not value <= high
    if too_low or too_high or value != value:
        bounds = (f"in [{low}, {high}]" if high is not None else f">= {low}"
                  if low is not None else "a number")
        raise ValueError(f"{name}: expected a value {bounds}, got {value!r}")
    return value


def integer(name, value):
    if type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {value!r}") from None


def choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}")
    return value


def axis(name, value, ndim):
    index = integer(name, value)
    if not -ndim <= index < ndim:
        raise ValueError(f"{name}: expected an axis in [{-ndim}, {ndim}) for an "
                         f"array of {ndim} dimensions, got {index}")
    return index % ndim


def int64(name, value):
    """An integer that fits in int64 (the kernels' label type)."""
    value = integer(name, value)
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"{name}: expected an integer in the int64 range, got {value}")
    return value


def class_target(target, logits, ignore_index):
    """Class indices as int64 of shape (N, d1, ..., dk), or probabilities of
    the logits' shape and dtype, for logits (N, C, d1, ..., dk)."""
    C = logits.shape[1]
    index_shape = logits.shape[:1] + logits.shape[2:]
    array = target if type(target) is np.ndarray else np.asarray(target)
    kind = array.dtype.kind
    if kind in "iu":
        if array.shape != index_shape:
            raise ValueError(f"target: expected class indices of shape {index_shape} (or "
                             f"probabilities of shape {logits.shape}), got shape {array.shape}")
        index = array if array.dtype is _INT64 else array.astype(np.int64)
        if not labels_in_range(index, C):
            outside = (index < 0) | (index >= C)
            bad = index[outside & (index != ignore_index)]
            if bad.size:
                raise ValueError(f"target: expected class indices in [0, {C}) or "
                                 f"ignore_index={ignore_index}, got {bad[0]}")
        if kind == "u" and array.dtype.itemsize == 8 and (array >= 1 << 63).any():
            raise ValueError("target: expected class indices in the int64 range, "
                             "got a larger unsigned value")
        return index
    if kind == "f" and array.ndim == logits.ndim:
        float_array("target", array, logits.dtype)
        check_shape("target", array, logits.shape)
        return array
    raise TypeError(f"target: expected integer class indices of shape {index_shape} or "
                    f"{logits.dtype} probabilities of shape {logits.shape}, got "
                    f"{array.dtype} array of shape {array.shape}")


def labels_in_range(index, C):
    """Every label in [0, C)?  (A cheap test; the caller then looks closer.)"""
    if index.size <= 32:
        # A NumPy reduction costs over a microsecond of fixed overhead, which
        # is a fifth of a whole tiny cross-entropy call; a short list is cheaper.
        labels = index.ravel().tolist()
        return min(labels) >= 0 and max(labels) < C
    # Seen as unsigned, negative labels are huge: one max checks both ends.
    return index.view(np.uint64).max() < C


# ---------------------------------------------------------------- fast paths
# The common call passes arrays that need no conversion, copy or overlap
# search.  Recognizing it takes a few attribute reads per argument (about
# 0.1 us), against 0.2-0.5 us per argument for the full checks above; a call
# that is not plain in every respect goes through the full checks, which
# then explain what is wrong.

def plain_float(a):
    """``a`` is an aligned, writeable, C-contiguous float32/float64 ndarray."""
    return (type(a) is np.ndarray and (a.dtype is _F32 or a.dtype is _F64)
            and a.flags.carray)


def plain(a, dtype, shape):
    """``a`` is an aligned, writeable, C-contiguous ndarray of exactly
    ``dtype`` and ``shape``."""
    return type(a) is np.ndarray and a.dtype is dtype and a.shape == shape and a.flags.carray


def plain_or_none(a, dtype, shape):
    return a is None or plain(a, dtype, shape)


def apart(written, others):
    """``written`` provably shares no memory with any of ``others`` (None
    entries skipped): both own their memory and are distinct, or their
    address ranges do not meet.  False means "not proven", not "overlap"."""
    for other in others:
        if other is None:
            continue
        if other is written:
            return False
        if (written.base is not None or other.base is not None) and np.may_share_memory(
                written, other):
            return False
    return True


def plain_real(value, low, high=None):
    """A Python float in [low, high] (NaN fails every comparison)."""
    return type(value) is float and value >= low and (high is None or value <= high)
