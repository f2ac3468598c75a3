"""The training step: zero_grad, forward, loss, backward and Adam of a batch-normalized MLP.

The entry (``fastnn/bench/cases/training.py``) times the whole step on
every fastnn backend, the same kernel calls alone (``+kernels``), the NumPy
step and PyTorch's (default and fused Adam).  With ``--benchmark-disable``
each contender runs a step at the tiny size (float32) and at the digits
example's size (float64) and is checked against the float64 reference.
"""

FAMILY = "training"


def test_training(run_case):
    run_case()
