"""Linear layers: forward and backward, with and without the fused ReLU.

Every kernel entry of the family (``fastnn/bench/cases/linear.py``) is
benchmarked.  ``gemm-only`` rows time NumPy's bare matrix products, the
floor a fused Linear layer aims at.  Every contender of a kernel, size,
dtype and thread count is one pytest-benchmark group (see ``conftest.py``).
"""

FAMILY = "linear"


def test_linear(run_case):
    run_case()
