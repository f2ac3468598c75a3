"""Cross-entropy semantics a table of samples does not show on its own.

- ``out=logits``: the gradient overwrites the logits, the loss is that of the
  original logits; other preallocated buffers (Fortran, strided) likewise;
- the spec's closed form for integer targets and the mean:
  (softmax(logits) - onehot(target)) / N;
- relations between options that must hold exactly or to rounding: one-hot
  probabilities = class indices, unit weights = no weights, "sum" = sum of
  "none", the gradient is linear in grad_loss, an ignored row counts for
  nothing, the fused call = forward + backward;
- float32 within its tolerance of float64 on the same data.
"""

import numpy as np
import pytest

import fastnn

from . import oracle
from .support import assert_close, assert_outputs, relayout, tolerance

OPTION_SETS = [
    dict(),
    dict(reduction="sum", weight=True),
    dict(reduction="none", label_smoothing=0.1),
    dict(weight=True, label_smoothing=0.2, ignore=True),
    dict(probabilities=True, weight=True, label_smoothing=0.1),
]
OPTION_IDS = ["mean", "sum-weight", "none-smoothing", "mean-weight-smoothing-ignored",
              "probs-weight-smoothing"]


def make_case(dtype, options, n=12, c=9, seed=41):
    rng = np.random.default_rng(seed)
    options = dict(options)
    logits = (3 * rng.standard_normal((n, c))).astype(dtype)
    if options.pop("probabilities", False):
        target = rng.dirichlet(np.ones(c), n).astype(dtype)
    else:
        target = rng.integers(0, c, n)
        if options.pop("ignore", False):
            target[::4] = -100
    if options.pop("weight", False):
        options["weight"] = rng.uniform(0.2, 2, c).astype(dtype)
    return logits, target, options


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
@pytest.mark.parametrize("layout", ["contiguous", "fortran", "strided"])
def test_out_is_logits(backend, dtype, options, layout):
    """out=logits: the gradient replaces the logits; the loss is the original logits'."""
    logits, target, options = make_case(dtype, options)
    expected_loss, expected_grad = oracle.softmax_cross_entropy_with_grad(logits, target,
                                                                          **options)
    if layout != "contiguous":
        logits = relayout(logits, layout)
    loss, grad = fastnn.softmax_cross_entropy_with_grad(logits, target, **options, out=logits,
                                                        backend=backend)
    assert grad is logits
    assert_outputs(loss, expected_loss, dtype, "loss")
    assert_outputs(logits, expected_grad, dtype, "gradient written over the logits")


@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed"])
def test_out_any_layout(backend, dtype, layout):
    logits, target, options = make_case(dtype, dict(weight=True, label_smoothing=0.1))
    out = relayout(np.full(logits.shape, np.nan, dtype), layout)
    loss, grad = fastnn.softmax_cross_entropy_with_grad(logits, target, **options, out=out,
                                                        backend=backend)
    assert grad is out
    expected_loss, expected_grad = oracle.softmax_cross_entropy_with_grad(logits, target,
                                                                          **options)
    assert_outputs(loss, expected_loss, dtype, "loss")
    assert_outputs(out, expected_grad, dtype, "gradient in out")


def test_out_partly_overlapping_logits_is_rejected(backend):
    logits, target, _ = make_case(np.float32, {})
    buffer = np.concatenate([logits, logits[:1]])
    shifted = buffer[1:]
    before = buffer.copy()
    with pytest.raises(ValueError, match=r"^out\b"):
        fastnn.softmax_cross_entropy_with_grad(buffer[:-1], target, out=shifted,
                                               backend=backend)
    assert buffer.tobytes() == before.tobytes()


def test_closed_form_integer_targets_mean(backend, dtype):
    logits, target, _ = make_case(dtype, {})
    n, c = logits.shape
    expected = (oracle.softmax(logits, axis=1) - np.eye(c)[target]) / n
    got = fastnn.softmax_cross_entropy_backward(logits, target, backend=backend)
    assert_outputs(got, expected, dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_one_hot_probabilities_equal_class_indices(backend, dtype, reduction, label_smoothing):
    """Without weights and ignored targets, one-hot rows are the same target as indices."""
    logits, target, _ = make_case(dtype, {})
    one_hot = np.eye(logits.shape[1], dtype=dtype)[target]
    options = dict(reduction=reduction, label_smoothing=label_smoothing, backend=backend)
    for function in (fastnn.softmax_cross_entropy, fastnn.softmax_cross_entropy_backward):
        by_index = function(logits, target, **options)
        by_probability = function(logits, one_hot, **options)
        assert_outputs(by_probability, by_index.astype(np.float64), dtype, function.__name__)


@pytest.mark.parametrize("options", OPTION_SETS[:4], ids=OPTION_IDS[:4])
def test_unit_weights_equal_no_weights(backend, dtype, options):
    logits, target, options = make_case(dtype, options)
    options.pop("weight", None)
    unit = np.ones(logits.shape[1], dtype)
    plain = fastnn.softmax_cross_entropy_with_grad(logits, target, **options, backend=backend)
    weighted = fastnn.softmax_cross_entropy_with_grad(logits, target, **options, weight=unit,
                                                      backend=backend)
    assert_outputs(weighted, tuple(a.astype(np.float64) for a in plain), dtype)


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
def test_reductions_agree(backend, dtype, options):
    """sum = none.sum(); mean = none.sum() / divisor (N for probabilities)."""
    logits, target, options = make_case(dtype, options)
    options.pop("reduction", None)
    per_sample = fastnn.softmax_cross_entropy(logits, target, reduction="none", **options,
                                              backend=backend).astype(np.float64)
    total = fastnn.softmax_cross_entropy(logits, target, reduction="sum", **options,
                                         backend=backend)
    mean = fastnn.softmax_cross_entropy(logits, target, reduction="mean", **options,
                                        backend=backend)
    assert_close(total, per_sample.sum(), tolerance(dtype), "sum")
    if target.ndim == 2:
        divisor = len(target)
    else:
        counted = target != -100
        weight = options.get("weight")
        divisor = (counted.sum() if weight is None
                   else weight.astype(np.float64)[target[counted]].sum())
    assert_close(mean, per_sample.sum() / divisor, tolerance(dtype), "mean")


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
def test_gradient_linear_in_grad_loss(backend, dtype, options):
    logits, target, options = make_case(dtype, options)
    if options.get("reduction") == "none":
        scale = np.random.default_rng(42).uniform(-2, 2, len(logits)).astype(dtype)
        unit = np.ones(len(logits), dtype)
        expand = scale.astype(np.float64)[:, None]
    else:
        scale, unit, expand = -2.5, 1.0, -2.5
    scaled = fastnn.softmax_cross_entropy_backward(logits, target, scale, **options,
                                                   backend=backend)
    base = fastnn.softmax_cross_entropy_backward(logits, target, unit, **options,
                                                 backend=backend)
    assert_outputs(scaled, base.astype(np.float64) * expand, dtype)


@pytest.mark.parametrize("ignore_index", [-100, 0, 3])
def test_ignored_rows_count_for_nothing(backend, dtype, ignore_index):
    """An ignored row has loss 0 and gradient 0 (exactly), whatever its logits."""
    logits, _, _ = make_case(dtype, {})
    rng = np.random.default_rng(43)
    target = rng.integers(0, logits.shape[1], len(logits))
    target[[1, 5, 6]] = ignore_index
    ignored = target == ignore_index
    options = dict(ignore_index=ignore_index, label_smoothing=0.2, backend=backend)
    loss, grad = fastnn.softmax_cross_entropy_with_grad(logits, target, reduction="none",
                                                        **options)
    assert np.all(loss[ignored] == 0) and np.all(grad[ignored] == 0)
    assert np.all(loss[~ignored] > 0)
    # Dropping the ignored rows leaves the mean unchanged.
    kept = fastnn.softmax_cross_entropy(logits[~ignored], target[~ignored], **options)
    assert_close(fastnn.softmax_cross_entropy(logits, target, **options), kept, tolerance(dtype))


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
def test_fused_equals_forward_and_backward(backend, dtype, options):
    logits, target, options = make_case(dtype, options)
    unit = np.ones(len(logits), dtype) if options.get("reduction") == "none" else 1.0
    loss, grad = fastnn.softmax_cross_entropy_with_grad(logits, target, **options,
                                                        backend=backend)
    assert_outputs(loss, fastnn.softmax_cross_entropy(logits, target, **options,
                                                      backend=backend).astype(np.float64), dtype)
    assert_outputs(grad, fastnn.softmax_cross_entropy_backward(
        logits, target, unit, **options, backend=backend).astype(np.float64), dtype)


@pytest.mark.parametrize("options", OPTION_SETS, ids=OPTION_IDS)
def test_float32_close_to_float64(backend, options):
    logits, target, options = make_case(np.float32, options)
    single = fastnn.softmax_cross_entropy_with_grad(logits, target, **options, backend=backend)
    cast = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v)
            for k, v in options.items()}
    target64 = target.astype(np.float64) if target.dtype.kind == "f" else target
    double = fastnn.softmax_cross_entropy_with_grad(logits.astype(np.float64), target64, **cast,
                                                    backend=backend)
    assert_outputs(single, double, np.float32)
