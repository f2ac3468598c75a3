"""The one place that decides the memory layout kernels see.

The backend contract (``fastnn/_backends/__init__.py``) promises kernels
C-contiguous, writeable arrays in canonical shapes, zero-length stand-ins for
absent optional arrays, and outputs allocated before the call.  The public
functions get there through these helpers, so no backend redoes it:

- ``rows(a)``: ``a`` itself when it is C-contiguous, writeable and aligned
  (the common case: no copy), else a C-contiguous copy.  Read-only and
  unaligned inputs (both rare) are copied because a compiled kernel typed
  for writeable aligned arrays would otherwise need another compiled
  variant for every such argument;
- ``blas_operand(a)``: ``a`` itself when BLAS can read it in place (unit
  stride along one axis; writeable and aligned as above), else a
  C-contiguous copy;
- ``absent(dtype)``, ``absent_matrix(dtype)``: the shared ``(0,)`` and
  ``(0, 0)`` stand-ins of a dtype (never written: they have no elements);
- ``output(out, shape, dtype)``: the array a kernel writes: a view of the
  caller's ``out`` when that is C-contiguous, else a new array, which
  ``deliver`` then copies into ``out``;
- ``updated(a)`` / ``write_back(a, rows)``: an in-place argument (running
  statistics) as the kernel must see it, and its values put back when a
  copy was needed.
"""

import numpy as np

_ABSENT = {np.dtype(np.float32): np.zeros(0, np.float32),
           np.dtype(np.float64): np.zeros(0, np.float64),
           np.dtype(np.int64): np.zeros(0, np.int64)}
_ABSENT_MATRIX = {np.dtype(np.float32): np.zeros((0, 0), np.float32),
                  np.dtype(np.float64): np.zeros((0, 0), np.float64)}


ABSENT = _ABSENT
ABSENT_MATRIX = _ABSENT_MATRIX


def absent(dtype):
    return _ABSENT[dtype]


def absent_matrix(dtype):
    return _ABSENT_MATRIX[dtype]


def rows(a):
    flags = a.flags
    if flags.c_contiguous and flags.writeable and flags.aligned:
        return a
    return np.array(a, order="C")


def optional_rows(a, dtype):
    return _ABSENT[dtype] if a is None else rows(a)


def blas_operand(a):
    """``a`` when BLAS reads it in place, else a C-contiguous copy.

    BLAS reads a matrix whose elements are contiguous along one axis and
    evenly spaced (at least one row or column apart) along the other;
    NumPy's matmul would otherwise take its slow non-BLAS loop.
    """
    flags = a.flags
    if flags.writeable and flags.aligned:
        item = a.itemsize
        n_rows, n_cols = a.shape
        row_step, col_step = a.strides
        if col_step == item and row_step % item == 0 and row_step >= n_cols * item:
            return a
        if row_step == item and col_step % item == 0 and col_step >= n_rows * item:
            return a
    return np.array(a, order="C")


def output(out, shape, dtype):
    """The C-contiguous array of ``shape`` a kernel writes for ``out`` (or None)."""
    if out is not None and out.flags.c_contiguous:
        return out.reshape(shape)
    return np.empty(shape, dtype)


def deliver(result, out, shape):
    """The kernel's output as the caller gets it: ``out`` itself when given
    (filled from ``result`` unless that was a view of it), else ``result``
    in ``shape``."""
    if out is None:
        return result.reshape(shape)
    if not out.flags.c_contiguous:      # result is then a new array (``output``)
        out[...] = result.reshape(shape)
    return out


def updated(a):
    """An argument the kernel updates in place, as it must see it: ``a`` or a
    contiguous copy (``write_back`` then returns the values)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def write_back(original, seen):
    if seen is not original:
        original[...] = seen
