"""The C backend: kernels in ``kernels/`` compiled with cffi.

The compiled extension ``fastnn._backends.c._fastnn_c`` does not exist yet:
until the kernels are written and built, importing this module raises
ImportError, and ``fastnn.backends()`` reports the backend as unavailable
with that reason.
"""

try:
    from . import _fastnn_c  # noqa: F401  (built by the C-backend build script)
except ImportError as exc:
    raise ImportError("the C kernels are not built (no compiled module "
                      "fastnn._backends.c._fastnn_c)") from exc
