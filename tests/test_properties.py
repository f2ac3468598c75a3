"""Property-based tests (hypothesis): shapes, options and values no fixed case lists.

Each test draws a shape (sizes from 1, odd, up to a few dozen), the options
of the call and the data, runs one backend and compares with the oracle
under the same tolerances as the fixed samples (``opinfo`` term scales
included).  Softmax and cross-entropy take their values from hypothesis
itself (repeated, extreme and subnormal numbers); batch norm and Linear draw
a seed and a conditioning (offset against spread), since their float32
error grows with it and is judged by it.  Budget: the ``fastnn`` profile
of ``conftest.py`` (25 examples per test and backend and dtype).
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn

from .opinfo import OPS_BY_NAME
from .support import assert_outputs, no_warnings

seeds = st.integers(0, 2**32 - 1)


def values(dtype, bound):
    return st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8, allow_nan=False)


def check_against_oracle(name, kwargs, backend, dtype):
    op = OPS_BY_NAME[name]
    expected, _ = op.call_reference(kwargs)
    with no_warnings():
        got = op.function(**kwargs, backend=backend)
    assert_outputs(got, expected, dtype, name, scale=op.scales(kwargs))
    return got


# ---------------------------------------------------------------- batch norm

@given(data=st.data())
def test_batchnorm(backend, dtype, data):
    n = data.draw(st.integers(1, 9), label="N")
    c = data.draw(st.integers(1, 7), label="C")
    spatial = data.draw(st.lists(st.integers(1, 5), max_size=2), label="spatial")
    shape = (n, c, *spatial)
    training = data.draw(st.booleans(), label="training") and n * int(np.prod(spatial)) >= 2
    affine = data.draw(st.booleans(), label="affine")
    offset = data.draw(st.floats(-5, 5), label="offset")
    spread = data.draw(st.sampled_from([0.0, 0.2, 1.0, 5.0]), label="spread")
    eps = data.draw(st.sampled_from([0.0, 1e-5, 0.1]) if spread else st.just(1e-5), label="eps")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = (offset + spread * rng.standard_normal(shape)).astype(dtype)
    kwargs = dict(x=x, training=training, eps=eps,
                  momentum=data.draw(st.floats(0, 1), label="momentum"),
                  running_mean=rng.standard_normal(c).astype(dtype),
                  running_var=rng.uniform(0.5, 2, c).astype(dtype))
    if affine:
        kwargs.update(weight=rng.standard_normal(c).astype(dtype),
                      bias=rng.standard_normal(c).astype(dtype))
    y, mean, invstd = check_against_oracle("batchnorm_forward", kwargs, backend, dtype)
    if spread == 0.0 and training:
        return      # zero variance: dx is 0/0-sensitive noise scaled by 1/sqrt(eps)
    backward = dict(dy=rng.standard_normal(shape).astype(dtype), x=x,
                    weight=kwargs.get("weight"), mean=mean, invstd=invstd, training=training)
    check_against_oracle("batchnorm_backward", backward, backend, dtype)


# ------------------------------------------------------------------- softmax

@given(data=st.data())
def test_softmax(backend, dtype, data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=12), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = data.draw(hnp.arrays(dtype, shape, elements=values(dtype, 1e3)), label="x")
    p = check_against_oracle("softmax", dict(x=x, axis=axis), backend, dtype)
    check_against_oracle("log_softmax", dict(x=x, axis=axis), backend, dtype)
    assert np.all(p >= 0) and np.all(p <= 1)


# ------------------------------------------------------------ cross-entropy

@given(data=st.data())
def test_cross_entropy(backend, dtype, data):
    n = data.draw(st.integers(1, 12), label="N")
    c = data.draw(st.integers(1, 12), label="C")
    logits = data.draw(hnp.arrays(dtype, (n, c), elements=values(dtype, 100)), label="logits")
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    options = dict(reduction=data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction"),
                   label_smoothing=data.draw(st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0, 1),
                                             label="label_smoothing"))
    if data.draw(st.booleans(), label="weight"):
        options["weight"] = rng.uniform(0.1, 3, c).astype(dtype)
    if data.draw(st.booleans(), label="probabilities"):
        target = rng.dirichlet(np.full(c, data.draw(st.sampled_from([0.1, 1.0, 10.0]))), n)
        target = target.astype(dtype)
    else:
        ignore_index = data.draw(st.sampled_from([-100, -1, 0]), label="ignore_index")
        target = rng.integers(0, c, n)
        target[rng.random(n) < data.draw(st.sampled_from([0.0, 0.3, 1.0]), label="ignored")] = \
            ignore_index
        options["ignore_index"] = ignore_index
    kwargs = dict(logits=logits, target=target, **options)
    check_against_oracle("softmax_cross_entropy_with_grad", kwargs, backend, dtype)
    check_against_oracle("softmax_cross_entropy", kwargs, backend, dtype)
    grad_loss = (rng.uniform(-2, 2, n).astype(dtype) if options["reduction"] == "none"
                 else float(rng.uniform(-2, 2)))
    check_against_oracle("softmax_cross_entropy_backward", dict(kwargs, grad_loss=grad_loss),
                         backend, dtype)


# -------------------------------------------------------------------- linear

@given(data=st.data())
def test_linear(backend, dtype, data):
    n, k, m = (data.draw(st.integers(1, 40), label=name) for name in ("N", "K", "M"))
    rng = np.random.default_rng(data.draw(seeds, label="seed"))
    x = rng.standard_normal((n, k)).astype(dtype)
    weight = rng.standard_normal((m, k)).astype(dtype)
    bias = rng.standard_normal(m).astype(dtype) if data.draw(st.booleans(), label="bias") else None
    activation = data.draw(st.sampled_from([None, "relu"]), label="activation")
    y = check_against_oracle("linear_forward", dict(x=x, weight=weight, bias=bias,
                                                    activation=activation), backend, dtype)
    backward = dict(dy=rng.standard_normal((n, m)).astype(dtype), x=x, weight=weight,
                    activation=activation, has_bias=bias is not None,
                    need_dx=data.draw(st.booleans(), label="need_dx"))
    if activation == "relu":
        backward["y"] = y
    check_against_oracle("linear_backward", backward, backend, dtype)
    assert fastnn.linear_forward(x, weight, bias, activation=activation,
                                 backend=backend).tobytes() == y.tobytes()
