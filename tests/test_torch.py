"""Every function against PyTorch's CPU implementation, where PyTorch is importable.

PyTorch is an oracle only (never a dependency of fastnn): without it this
module skips cleanly.  PyTorch runs in float64 on the same (upcast) inputs,
gradients come from its autograd, and each backend is held to its dtype's
tolerance.  The suite's own oracle is checked here too (``impl="oracle"``):
that is what makes it a fair judge of the rest.
"""

import os

import numpy as np
import pytest

from .opinfo import ce_cases
from .support import assert_outputs, tolerance

try:
    import torch
except ImportError as missing:
    # CI installs PyTorch where it can and then sets FASTNN_REQUIRE_TORCH=1:
    # there its absence fails the suite instead of skipping the oracle.
    if os.environ.get("FASTNN_REQUIRE_TORCH") == "1":
        raise
    pytest.skip(f"PyTorch is not installed ({missing}); its comparisons are skipped",
                allow_module_level=True)
F = torch.nn.functional


def tensor(array, grad=False):
    if array is None:
        return None
    t = torch.from_numpy(np.array(array, dtype=np.float64))
    return t.requires_grad_() if grad else t


def numpy(t):
    return None if t is None else t.detach().numpy()


def check(got, expected, dtype, what):
    """impl's result (its dtype, or the oracle's float64) against PyTorch's."""
    if isinstance(got, np.ndarray) and got.dtype == np.float64 and dtype != np.float64:
        got = got.astype(dtype)          # the oracle on float32 data: judge it as float32
    assert_outputs(got, expected, dtype, what, tol=tolerance(dtype))


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("training", [True, False], ids=["training", "eval"])
@pytest.mark.parametrize("affine", [True, False, "weight", "bias"],
                         ids=["affine", "plain", "weight-only", "bias-only"])
@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 6), (3, 4, 7), (2, 3, 2, 2, 3)], ids=str)
def test_batchnorm(impl, dtype, shape, affine, training):
    rng = np.random.default_rng(51)
    c = shape[1]
    x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
    weight = rng.standard_normal(c).astype(dtype) if affine in (True, "weight") else None
    bias = rng.standard_normal(c).astype(dtype) if affine in (True, "bias") else None
    running_mean = rng.standard_normal(c).astype(dtype)
    running_var = rng.uniform(0.5, 2, c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    momentum, eps = 0.2, 1e-4

    t_x, t_w, t_b = tensor(x, True), tensor(weight, True), tensor(bias, True)
    t_mean, t_var = tensor(running_mean), tensor(running_var)
    t_y = F.batch_norm(t_x, t_mean, t_var, t_w, t_b, training=training, momentum=momentum,
                       eps=eps)
    t_y.backward(tensor(dy))

    mine_mean, mine_var = running_mean.copy(), running_var.copy()
    y, mean, invstd = impl("batchnorm_forward")(x, weight, bias, mine_mean, mine_var,
                                                training=training, momentum=momentum, eps=eps)
    check(y, numpy(t_y), dtype, "y")
    check(mine_mean, numpy(t_mean), dtype, "running_mean")
    check(mine_var, numpy(t_var), dtype, "running_var")
    dx, dweight, dbias = impl("batchnorm_backward")(dy, x, weight, mean, invstd,
                                                    training=training)
    check(dx, numpy(t_x.grad), dtype, "dx")
    # fastnn's backward takes weight only; dweight and dbias come with it.
    check(dweight, numpy(t_w.grad) if weight is not None else None, dtype, "dweight")
    if weight is not None and bias is not None:
        check(dbias, numpy(t_b.grad), dtype, "dbias")


# ------------------------------------------------------------------- softmax

@pytest.mark.parametrize("shape, axis", [((8, 10), -1), ((8, 10), 0), ((3, 4, 5), 1),
                                         ((4, 1000), -1), ((7,), 0)], ids=str)
def test_softmax(impl, dtype, shape, axis):
    x = (4 * np.random.default_rng(52).standard_normal(shape)).astype(dtype)
    check(impl("softmax")(x, axis), numpy(torch.softmax(tensor(x), axis)), dtype, "softmax")
    check(impl("log_softmax")(x, axis), numpy(torch.log_softmax(tensor(x), axis)), dtype,
          "log_softmax")


# ------------------------------------------------------------ cross-entropy

CE_CASES = [case[0] for case in ce_cases(np.float64)]


@pytest.mark.parametrize("case", CE_CASES)
def test_cross_entropy(impl, dtype, case):
    desc, logits, target, options, _ = next(c for c in ce_cases(dtype) if c[0] == case)
    positions = logits.shape[:1] + logits.shape[2:]
    reduction = options.get("reduction", "mean")
    grad_loss = (np.random.default_rng(53).uniform(-1, 2, positions).astype(dtype)
                 if reduction == "none" else 0.75)

    t_logits = tensor(logits, True)
    t_target = (torch.from_numpy(target.astype(np.int64)) if target.dtype.kind in "iu"
                else tensor(target))
    t_loss = F.cross_entropy(t_logits, t_target, weight=tensor(options.get("weight")),
                             ignore_index=options.get("ignore_index", -100),
                             reduction=reduction,
                             label_smoothing=options.get("label_smoothing", 0.0))
    t_loss.backward(tensor(grad_loss) if reduction == "none" else
                    torch.tensor(grad_loss, dtype=torch.float64))

    loss = impl("softmax_cross_entropy")(logits, target, **options)
    check(loss, numpy(t_loss), dtype, "loss")
    grad = impl("softmax_cross_entropy_backward")(logits, target, grad_loss, **options)
    check(grad, numpy(t_logits.grad), dtype, "gradient")


# -------------------------------------------------------------------- linear

@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("has_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("n, k, m", [(8, 5, 3), (33, 17, 9), (1, 1, 1), ((2, 5), 4, 3),
                                     ((), 6, 2)], ids=str)
def test_linear(impl, dtype, n, k, m, has_bias, activation):
    rng = np.random.default_rng(54)
    leading = n if isinstance(n, tuple) else (n,)
    x = rng.standard_normal(leading + (k,)).astype(dtype)
    weight = (rng.standard_normal((m, k)) / np.sqrt(k)).astype(dtype)
    bias = rng.standard_normal(m).astype(dtype) if has_bias else None
    dy = rng.standard_normal(leading + (m,)).astype(dtype)

    t_x, t_w, t_b = tensor(x, True), tensor(weight, True), tensor(bias, has_bias)
    t_y = F.linear(t_x, t_w, t_b)
    if activation == "relu":
        t_y = torch.relu(t_y)
    t_y.backward(tensor(dy))

    y = impl("linear_forward")(x, weight, bias, activation=activation)
    scale = ((np.abs(x) @ np.abs(weight).T).max()
             + (np.abs(bias).max() if has_bias else 0))
    assert_outputs(y if y.dtype == dtype else y.astype(dtype), numpy(t_y), dtype, "y",
                   scale=scale)
    # The ReLU mask comes from the forward output y; PyTorch's y in float64
    # and this y agree on its sign except within rounding of 0.
    dx, dweight, dbias = impl("linear_backward")(dy, x, weight, y=numpy(t_y).astype(dtype),
                                                 activation=activation, has_bias=has_bias)
    check(dx, numpy(t_x.grad), dtype, "dx")
    check(dweight, numpy(t_w.grad), dtype, "dweight")
    check(dbias, numpy(t_b.grad) if has_bias else None, dtype, "dbias")
