"""Batch norm: forward in training and evaluation, backward; (N, C) and (N, C, H, W).

Every kernel entry of the family (``fastnn/bench/cases/batchnorm.py``) is
benchmarked; every contender of a kernel, size, dtype and thread count is
one pytest-benchmark group (see ``conftest.py`` for options and comparing runs).
"""

FAMILY = "batchnorm"


def test_batchnorm(run_case):
    run_case()
