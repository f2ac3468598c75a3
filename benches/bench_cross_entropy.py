"""Softmax cross-entropy: loss only, gradient only, loss and gradient fused (also into out=).

Every contender of a kernel, size, dtype and thread count is one
pytest-benchmark group (see ``conftest.py`` for options and comparing runs).
"""

KERNELS = ("cross_entropy", "cross_entropy_backward", "cross_entropy_with_grad")


def test_cross_entropy(run_case):
    run_case()
