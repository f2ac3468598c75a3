"""Linear layers: forward and backward, with and without the fused ReLU.

``gemm-only`` rows time NumPy's bare matrix products, the floor a fused
Linear layer aims at.  Every contender of a kernel, size, dtype and thread
count is one pytest-benchmark group (see ``conftest.py``).
"""

KERNELS = ("linear_forward", "linear_relu_forward", "linear_backward", "linear_relu_backward")


def test_linear(run_case):
    run_case()
