"""Generic tests run over every entry of ``opinfo.OPS``, every backend and dtype.

- values, dtypes and result structure against the float64 oracle
  (float32 results within the float32 tolerance of ``support.TOLERANCE``);
- in-place arguments (running statistics, ``out``) end as the oracle's, and
  no other argument changes by a single bit;
- outputs are fresh arrays (no memory shared with the inputs except ``out``);
- Fortran-ordered, strided, negatively strided and read-only inputs give
  the result of contiguous ones;
- the same call twice gives bitwise the same result;
- every bad input raises its error naming its argument and changes nothing;
- ``backend="auto"`` conforms too.
"""

import inspect

import numpy as np
import pytest

import fastnn

from .opinfo import OPS
from .support import (
    LAYOUTS,
    arrays_of,
    assert_bitwise_equal,
    assert_close,
    assert_outputs,
    changed_arguments,
    copy_kwargs,
    relayout,
    snapshot,
    tolerance,
)

SAMPLE_PARAMS = [pytest.param(op, i, id=f"{op.name}-{sample.desc}")
                 for op in OPS for i, sample in enumerate(op.samples(np.float64))]
ERROR_PARAMS = [pytest.param(op, case, id=f"{op.name}-{case.desc}")
                for op in OPS for case in op.make_errors()]
OP_PARAMS = [pytest.param(op, id=op.name) for op in OPS]


def check_call(op, kwargs, backend, dtype):
    """Call op on kwargs and check everything the contract promises; returns the result."""
    before = snapshot(kwargs)
    mutable = op.mutable(kwargs)
    expected, ref_kwargs = op.call_reference(kwargs)
    got = op.function(**kwargs, backend=backend)

    assert_outputs(got, expected, dtype, scale=op.scales(kwargs))
    for name in mutable:
        if kwargs.get(name) is not None and name != "out":
            assert_close(kwargs[name], ref_kwargs[name], tolerance(dtype), f"updated {name}")
    assert changed_arguments(kwargs, before, allowed=mutable) == [], "an input was modified"

    inputs = [v for k, v in kwargs.items() if isinstance(v, np.ndarray) and k != "out"]
    outs = out_arrays(kwargs)
    for i, out_array in enumerate(arrays_of(got)):
        if any(out_array is given for given in outs):
            continue
        assert not any(np.shares_memory(out_array, a) for a in inputs), (
            f"output {i} shares memory with an input")
    return got


def out_arrays(kwargs):
    """The arrays an ``out=`` argument gives: one array, or a tuple's arrays."""
    out = kwargs.get("out")
    if out is None:
        return []
    return [a for a in out if a is not None] if isinstance(out, tuple) else [out]


def assert_out_received(op, got, kwargs):
    """With out=, the results are the out arrays themselves."""
    out = kwargs.get("out")
    if out is None:
        return
    if isinstance(out, tuple):
        for i, given in enumerate(out):
            if given is not None:
                assert got[i] is given, f"with out=, result {i} is out[{i}] itself"
    elif op.out_index is None:
        assert got is out, "with out=, the result is out itself"
    else:
        assert got[op.out_index] is out, "with out=, the result is out itself"


@pytest.mark.parametrize("op, index", SAMPLE_PARAMS)
def test_matches_oracle(op, index, backend, dtype):
    sample = op.samples(dtype)[index]
    got = check_call(op, sample.kwargs, backend, dtype)
    assert_out_received(op, got, sample.kwargs)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", OP_PARAMS)
def test_memory_layouts(op, layout, backend, dtype):
    """Any strides or memory order give the contiguous result (to rounding)."""
    for sample in op.samples(dtype):
        contiguous = op.function(**copy_kwargs(sample.kwargs), backend=backend)
        kwargs = copy_kwargs(sample.kwargs)
        writable = set(op.mutable(kwargs))
        for name, value in kwargs.items():
            if isinstance(value, np.ndarray) and value.ndim > 0:
                if layout == "readonly" and name in writable:
                    continue
                kwargs[name] = relayout(value, layout)
        try:
            got = check_call(op, kwargs, backend, dtype)
        except AssertionError as failure:
            raise AssertionError(f"sample {sample.desc}, {layout}: {failure}") from None
        assert_out_received(op, got, kwargs)
        assert_outputs(got, contiguous, dtype, f"{sample.desc}, {layout} vs contiguous",
                       scale=op.scales(kwargs))


@pytest.mark.parametrize("op", OP_PARAMS)
def test_deterministic(op, backend, dtype):
    """The same call twice: bitwise the same result, in-place updates included."""
    for sample in op.samples(dtype):
        first_kwargs, second_kwargs = copy_kwargs(sample.kwargs), copy_kwargs(sample.kwargs)
        first = op.function(**first_kwargs, backend=backend)
        second = op.function(**second_kwargs, backend=backend)
        # Fresh outputs per call: a reused buffer would also make this comparison vacuous.
        assert not any(np.shares_memory(a, b) for a in arrays_of(first) for b in arrays_of(second))
        assert_bitwise_equal(first, second, sample.desc)
        for name in op.mutable(first_kwargs):
            if first_kwargs.get(name) is not None:
                assert_bitwise_equal(first_kwargs[name], second_kwargs[name],
                                     f"{sample.desc} {name}")


@pytest.mark.parametrize("op, case", ERROR_PARAMS)
def test_bad_input(op, case, backend):
    """A clear error naming the argument, raised before anything changed."""
    before = snapshot(case.kwargs)
    with pytest.raises(case.error, match=case.match) as info:
        op.function(**case.kwargs, backend=backend)
    message = str(info.value)
    assert "expected" in message and "got" in message, f"say what was expected and got: {message}"
    if "-overlaps-" in case.desc:
        assert all(name in message for name in case.arguments), (
            f"an overlap error names both arguments: {message}")
    assert changed_arguments(case.kwargs, before) == [], "a rejected call modified an input"


@pytest.mark.parametrize("op", OP_PARAMS)
def test_auto_backend(op, dtype):
    for sample in op.samples(dtype)[:3] + [s for s in op.samples(dtype) if s.large][:1]:
        check_call(op, sample.kwargs, "auto", dtype)


@pytest.mark.parametrize("op", OP_PARAMS)
def test_unknown_backend_name(op):
    sample = op.samples(np.float32)[0]
    with pytest.raises(ValueError, match="numpy") as info:
        op.function(**sample.kwargs, backend="no-such-backend")
    assert "numba" in str(info.value), "the error lists the known backends"


# The public signatures of issue 2, section 1: names, order, keyword-only
# options and defaults are a contract (tests above call with these names).
PUBLIC_SIGNATURES = {
    "batchnorm_forward": "(x, weight=None, bias=None, running_mean=None, running_var=None, *, "
                         "training=True, momentum=0.1, eps=1e-05, out=None, backend=None)",
    "batchnorm_backward": "(dy, x, weight, mean, invstd, *, training=True, out=None, backend=None)",
    "softmax": "(x, axis=-1, *, backend=None)",
    "log_softmax": "(x, axis=-1, *, backend=None)",
    "softmax_cross_entropy": "(logits, target, *, weight=None, ignore_index=-100, "
                             "reduction='mean', label_smoothing=0.0, backend=None)",
    "softmax_cross_entropy_backward": "(logits, target, grad_loss=1.0, *, weight=None, "
                                      "ignore_index=-100, reduction='mean', "
                                      "label_smoothing=0.0, backend=None)",
    "softmax_cross_entropy_with_grad": "(logits, target, *, weight=None, ignore_index=-100, "
                                       "reduction='mean', label_smoothing=0.0, out=None, "
                                       "backend=None)",
    "linear_forward": "(x, weight, bias=None, *, activation=None, out=None, backend=None)",
    "linear_backward": "(dy, x, weight, *, y=None, activation=None, has_bias=True, "
                       "need_dx=True, out=None, backend=None)",
    "sgd_step": "(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, "
                "nesterov=False, weight_decay=0.0, first_step=False, backend=None)",
    "adam_step": "(param, grad, exp_avg, exp_avg_sq, *, step, lr=0.001, beta1=0.9, "
                 "beta2=0.999, eps=1e-08, weight_decay=0.0, decoupled=False, backend=None)",
}


@pytest.mark.parametrize("name", sorted(PUBLIC_SIGNATURES))
def test_public_signature(name):
    signature = inspect.signature(getattr(fastnn, name))
    plain = signature.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                          for p in signature.parameters.values()],
                              return_annotation=inspect.Signature.empty)
    assert str(plain) == PUBLIC_SIGNATURES[name]
    assert getattr(fastnn, name).__doc__, f"fastnn.{name} has no docstring"


def test_every_public_function_has_an_opinfo():
    assert {op.name for op in OPS} == set(PUBLIC_SIGNATURES)
