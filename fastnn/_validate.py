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


def output_array(out, shape, dtype, **inputs):
    """``out``, an array the kernel writes its result into: a writeable
    ndarray of ``shape`` and ``dtype`` sharing no memory with any of the
    named ``inputs`` (None entries are skipped)."""
    writable_array("out", out, dtype, shape)
    out_owns = out.flags.owndata
    for name, array in inputs.items():
        if array is None or (out_owns and array is not out and array.flags.owndata):
            continue        # two arrays that each own their memory never overlap
        if np.may_share_memory(out, array):
            raise ValueError(f"out: expected an array sharing no memory with the "
                             f"inputs, got one that overlaps {name}")
    return out


def check_out(out, logits, target):
    """``out`` may be ``logits`` itself, but must not partly overlap it or ``target``."""
    for other_name, other in (("logits", logits), ("target", target)):
        if not np.may_share_memory(out, other):
            continue
        if other_name == "logits" and _same_view(out, other):
            continue
        raise ValueError(f"out: expected logits itself or an array sharing no "
                         f"memory with {other_name}, got an overlapping array")


def _same_view(a, b):
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


def class_target(target, logits, ignore_index):
    """Class indices (N,) as int64, or probabilities (N, C) of the logits' dtype."""
    N, C = logits.shape
    array = target if type(target) is np.ndarray else np.asarray(target)
    kind = array.dtype.kind
    if kind in "iu" and array.ndim == 1:
        check_shape("target", array, (N,))
        index = array if array.dtype is _INT64 else array.astype(np.int64)
        if not _labels_in_range(index, C):
            outside = (index < 0) | (index >= C)
            bad = index[outside & (index != ignore_index)]
            if bad.size:
                raise ValueError(f"target: expected class indices in [0, {C}) or "
                                 f"ignore_index={ignore_index}, got {bad[0]}")
        return index
    if kind == "f" and array.ndim == 2:
        float_array("target", array, logits.dtype)
        check_shape("target", array, (N, C))
        return array
    raise TypeError(f"target: expected integer class indices of shape ({N},) or "
                    f"{logits.dtype} probabilities of shape ({N}, {C}), got "
                    f"{array.dtype} array of shape {array.shape}")


def _labels_in_range(index, C):
    """Every label in [0, C)?  (A cheap test; the caller then looks closer.)"""
    if index.size <= 32:
        # A NumPy reduction costs over a microsecond of fixed overhead, which
        # is a fifth of a whole tiny cross-entropy call; a short list is cheaper.
        labels = index.tolist()
        return min(labels) >= 0 and max(labels) < C
    # Seen as unsigned, negative labels are huge: one max checks both ends.
    return index.view(np.uint64).max() < C
