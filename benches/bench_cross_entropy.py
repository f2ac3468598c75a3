"""Softmax cross-entropy: loss only, gradient only, loss and gradient fused (also into out=).

Every kernel entry of the family (``fastnn/bench/cases/cross_entropy.py``)
is benchmarked; every contender of a kernel, size, dtype and thread count is
one pytest-benchmark group (see ``conftest.py`` for options and comparing runs).
"""

FAMILY = "cross_entropy"


def test_cross_entropy(run_case):
    run_case()
