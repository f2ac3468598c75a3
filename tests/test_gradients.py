"""Every backward against central finite differences of its own forward, in float64.

For a forward f and a fixed random cotangent G, the scalar L = sum(G * f(...))
has the gradient the backward computes when given dy = G (grad_loss = G for
cross-entropy).  Each input element is nudged by +-h and the slope of L is
compared with the backward's value: a check of each backend against itself
that needs no oracle.  The oracle runs here too (``impl="oracle"``), which is
how its own gradients are checked.  Small sizes: two calls per element.
"""

import numpy as np
import pytest

from .support import FINITE_DIFFERENCE, assert_close, finite_difference


def check(got, numerical, what):
    assert_close(got, numerical, FINITE_DIFFERENCE, what)


# ---------------------------------------------------------------- batch norm

BN_SHAPES = [(5, 3), (3, 2, 2, 2), (2, 3, 4)]


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batchnorm_training(impl, shape, affine):
    rng = np.random.default_rng(11)
    c = shape[1]
    x = 1.5 + rng.standard_normal(shape)
    weight = rng.standard_normal(c) if affine else None
    bias = rng.standard_normal(c) if affine else None
    cotangent = rng.standard_normal(shape)
    forward, backward = impl("batchnorm_forward"), impl("batchnorm_backward")

    def loss():
        return float((cotangent * forward(x, weight, bias, eps=1e-3)[0]).sum())

    _, mean, invstd = forward(x, weight, bias, eps=1e-3)
    dx, dweight, dbias = backward(cotangent, x, weight, mean, invstd)
    check(dx, finite_difference(loss, x), "dx")
    if affine:
        check(dweight, finite_difference(loss, weight), "dweight")
        check(dbias, finite_difference(loss, bias), "dbias")
    else:
        assert dweight is None and dbias is None


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
def test_batchnorm_evaluation(impl, shape, affine):
    rng = np.random.default_rng(12)
    c = shape[1]
    x = rng.standard_normal(shape)
    weight = rng.standard_normal(c) if affine else None
    bias = rng.standard_normal(c) if affine else None
    running_mean, running_var = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    cotangent = rng.standard_normal(shape)
    forward, backward = impl("batchnorm_forward"), impl("batchnorm_backward")

    def run():
        return forward(x, weight, bias, running_mean, running_var, training=False)

    def loss():
        return float((cotangent * run()[0]).sum())

    _, mean, invstd = run()
    dx, dweight, dbias = backward(cotangent, x, weight, mean, invstd, training=False)
    check(dx, finite_difference(loss, x), "dx")
    if affine:
        check(dweight, finite_difference(loss, weight), "dweight")
        check(dbias, finite_difference(loss, bias), "dbias")


# ------------------------------------------------------------ cross-entropy

def ce_case(kind, n=5, c=4, seed=13):
    """(logits, target, options) for one named combination of options."""
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal((n, c))
    labels = rng.integers(0, c, n)
    weight = rng.uniform(0.3, 2, c)
    probabilities = rng.dirichlet(np.ones(c), n)
    ignored = labels.copy()
    ignored[[1, 3]] = -100
    return {
        "labels": (logits, labels, {}),
        "weight": (logits, labels, dict(weight=weight)),
        "ignored-weight": (logits, ignored, dict(weight=weight)),
        "ignore-class-0": (logits, labels, dict(ignore_index=int(labels[0]))),
        "smoothing": (logits, labels, dict(label_smoothing=0.2)),
        "smoothing-weight-ignored": (logits, ignored, dict(weight=weight, label_smoothing=0.3)),
        "probs": (logits, probabilities, {}),
        "probs-weight-smoothing": (logits, probabilities, dict(weight=weight,
                                                               label_smoothing=0.1)),
    }[kind]


CE_KINDS = ["labels", "weight", "ignored-weight", "ignore-class-0", "smoothing",
            "smoothing-weight-ignored", "probs", "probs-weight-smoothing"]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", CE_KINDS)
def test_cross_entropy(impl, kind, reduction):
    logits, target, options = ce_case(kind)
    options = dict(options, reduction=reduction)
    n = logits.shape[0]
    grad_loss = (np.random.default_rng(14).uniform(-1, 2, n) if reduction == "none" else 0.7)
    forward = impl("softmax_cross_entropy")

    def loss():
        return float((np.asarray(grad_loss) * forward(logits, target, **options)).sum())

    numerical = finite_difference(loss, logits)
    check(impl("softmax_cross_entropy_backward")(logits, target, grad_loss, **options),
          numerical, "backward")
    # with_grad: the gradient of loss.sum(), i.e. grad_loss = 1 (per row for "none").
    unit = np.ones(n) if reduction == "none" else 1.0
    loss_value, dlogits = impl("softmax_cross_entropy_with_grad")(logits, target, **options)
    check(dlogits, finite_difference(
        lambda: float((unit * forward(logits, target, **options)).sum()), logits), "with_grad")
    assert_close(loss_value, forward(logits, target, **options), FINITE_DIFFERENCE, "loss")


# -------------------------------------------------------------------- linear

@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("has_bias", [True, False], ids=["bias", "no-bias"])
def test_linear(impl, has_bias, activation):
    rng = np.random.default_rng(15)
    n, k, m = 4, 3, 5
    x = rng.standard_normal((n, k))
    weight = rng.standard_normal((m, k))
    bias = rng.standard_normal(m) if has_bias else None
    # Keep every pre-activation away from the ReLU kink, where the slope jumps.
    pre = x @ weight.T + (bias if has_bias else 0)
    x[np.abs(pre).min(axis=1) < 1e-3] += 0.01
    cotangent = rng.standard_normal((n, m))
    forward = impl("linear_forward")

    def loss():
        return float((cotangent * forward(x, weight, bias, activation=activation)).sum())

    y = forward(x, weight, bias, activation=activation)
    dx, dweight, dbias = impl("linear_backward")(cotangent, x, weight, y=y, activation=activation,
                                                 has_bias=has_bias)
    check(dx, finite_difference(loss, x), "dx")
    check(dweight, finite_difference(loss, weight), "dweight")
    if has_bias:
        check(dbias, finite_difference(loss, bias), "dbias")
    else:
        assert dbias is None
