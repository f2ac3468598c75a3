"""Batch norm: forward in training and evaluation, backward; (N, C) and (N, C, H, W).

Every contender of a kernel, size, dtype and thread count is one
pytest-benchmark group (see ``conftest.py`` for options and comparing runs).
"""

KERNELS = ("batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward")


def test_batchnorm(run_case):
    run_case()
