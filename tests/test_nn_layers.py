"""fastnn.nn layers: Linear, BatchNorm, ReLU, SoftmaxCrossEntropy.

- outputs, input gradients and parameter gradients against central finite
  differences (float64) and against torch.nn (when installed; skipped
  otherwise), float32 and float64, on every available backend;
- BatchNorm's running statistics (momentum, momentum=None's cumulative
  average, num_batches_tracked, track_running_stats=False) against torch;
- PyTorch's default initialization (bounds, seeded reproducibility);
- every bad input of the issue (wrong feature or channel count, dtype,
  backward before forward, wrong grad_output) raises and changes nothing.
"""

import numpy as np
import pytest

import fastnn
from fastnn import nn

from .support import FINITE_DIFFERENCE, assert_close, finite_difference, tolerance

# A layer's float32 results against PyTorch's float32: both round every
# step at 6e-8; sums over a few hundred terms in different orders.
TORCH_FLOAT32 = type(tolerance(np.float32))(rtol=2e-5, atol=2e-5)
TORCH_FLOAT64 = type(tolerance(np.float64))(rtol=1e-11, atol=1e-12)


def torch_tolerance(dtype):
    return TORCH_FLOAT32 if np.dtype(dtype) == np.float32 else TORCH_FLOAT64


def probe_loss(layer, x, probe):
    """The scalar sum(layer(x) * probe) and its gradient with respect to the output."""
    return lambda: float(np.sum(layer(x) * probe))


# ------------------------------------------------------- finite differences

LAYER_CASES = {
    "linear": lambda: (nn.Linear(5, 4, dtype=np.float64, seed=1), (6, 5)),
    "linear-no-bias": lambda: (nn.Linear(5, 3, bias=False, dtype=np.float64, seed=2), (4, 5)),
    "batchnorm-NC": lambda: (nn.BatchNorm(4, dtype=np.float64), (7, 4)),
    "batchnorm-NCHW": lambda: (nn.BatchNorm(3, dtype=np.float64), (4, 3, 2, 3)),
    "batchnorm-no-affine": lambda: (nn.BatchNorm(3, affine=False, dtype=np.float64), (5, 3)),
    "batchnorm-eval": lambda: (nn.BatchNorm(3, dtype=np.float64).eval(), (5, 3)),
    "batchnorm-untracked-eval": lambda: (
        nn.BatchNorm(3, track_running_stats=False, dtype=np.float64).eval(), (5, 3)),
    "relu": lambda: (nn.ReLU(), (5, 6)),
    "sequential": lambda: (nn.Sequential(nn.Linear(4, 6, bias=False, dtype=np.float64, seed=3),
                                         nn.BatchNorm(6, dtype=np.float64), nn.ReLU(),
                                         nn.Linear(6, 5, dtype=np.float64, seed=4), nn.ReLU(),
                                         nn.Linear(5, 3, dtype=np.float64, seed=5)), (8, 4)),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_gradients_match_finite_differences(case, backend):
    layer, shape = LAYER_CASES[case]()
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape) + 0.3
    if isinstance(layer, nn.BatchNorm) and not layer.training and layer.track_running_stats:
        layer.running_mean[:] = rng.standard_normal(layer.num_features)
        layer.running_var[:] = rng.uniform(0.5, 2, layer.num_features)
    with fastnn.use_backend(backend):
        probe = rng.standard_normal(layer(x).shape)
        loss = probe_loss(layer, x, probe)
        layer(x)
        dx = layer.backward(probe.copy())
        assert_close(dx, finite_difference(loss, x), FINITE_DIFFERENCE, "dx")
        for name, p in layer.named_parameters():
            grad = p.grad.copy()
            assert_close(grad, finite_difference(loss, p.data), FINITE_DIFFERENCE, name)


def test_softmax_cross_entropy_gradient_matches_finite_differences(backend):
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((6, 5))
    target = rng.integers(0, 5, 6)
    for options in ({}, {"reduction": "sum", "label_smoothing": 0.1},
                    {"weight": rng.uniform(0.5, 2, 5)}):
        criterion = nn.SoftmaxCrossEntropy(**options)
        with fastnn.use_backend(backend):
            criterion(logits, target)
            grad = criterion.backward()
            numeric = finite_difference(lambda: criterion(logits, target), logits)
        assert_close(grad, numeric, FINITE_DIFFERENCE, f"dlogits {options}")


# ------------------------------------------------------------------ torch

def _torch():
    return pytest.importorskip("torch")


def _to_torch(torch, array):
    return torch.tensor(np.array(array))


def _torch_twin(torch, layer):
    if isinstance(layer, nn.Linear):
        twin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    elif isinstance(layer, nn.BatchNorm):
        twin = torch.nn.BatchNorm1d(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                                    affine=layer.affine,
                                    track_running_stats=layer.track_running_stats)
    elif isinstance(layer, nn.ReLU):
        twin = torch.nn.ReLU()
    else:
        twin = torch.nn.Sequential(*[_torch_twin(torch, child) for child in layer])
    twin = twin.to(torch.float64 if layer_dtype(layer) == np.float64 else torch.float32)
    twin.load_state_dict({k: _to_torch(torch, v) for k, v in layer.state_dict().items()})
    twin.train(layer.training)
    return twin


def layer_dtype(layer):
    params = layer.parameters()
    return params[0].dtype if params else getattr(layer, "dtype", np.dtype(np.float64))


TORCH_CASES = {
    "linear": lambda dt: (nn.Linear(7, 5, dtype=dt, seed=1), (9, 7)),
    "linear-no-bias": lambda dt: (nn.Linear(7, 5, bias=False, dtype=dt, seed=1), (9, 7)),
    "batchnorm": lambda dt: (nn.BatchNorm(6, dtype=dt), (10, 6)),
    "batchnorm-NCL": lambda dt: (nn.BatchNorm(3, momentum=0.3, dtype=dt), (4, 3, 5)),
    "batchnorm-cumulative": lambda dt: (nn.BatchNorm(4, momentum=None, dtype=dt), (8, 4)),
    "batchnorm-untracked": lambda dt: (nn.BatchNorm(4, track_running_stats=False, dtype=dt),
                                       (8, 4)),
    "batchnorm-no-affine": lambda dt: (nn.BatchNorm(4, affine=False, dtype=dt), (8, 4)),
    "mlp": lambda dt: (nn.Sequential(nn.Linear(6, 16, bias=False, dtype=dt, seed=2),
                                     nn.BatchNorm(16, dtype=dt), nn.ReLU(),
                                     nn.Linear(16, 8, dtype=dt, seed=3), nn.ReLU(),
                                     nn.Linear(8, 4, dtype=dt, seed=4)), (12, 6)),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_layers_match_torch(case, backend, dtype):
    """Three training steps' forward and backward, then evaluation: outputs,
    input and parameter gradients, running statistics all agree."""
    torch = _torch()
    layer, shape = TORCH_CASES[case](dtype)
    twin = _torch_twin(torch, layer)
    tol = torch_tolerance(dtype)
    rng = np.random.default_rng(21)
    with fastnn.use_backend(backend):
        for round_ in range(4):
            if round_ == 3:
                layer.eval()
                twin.eval()
            x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
            y = layer(x)
            xt = _to_torch(torch, x).requires_grad_(True)
            yt = twin(xt)
            assert_close(y, yt.detach().numpy(), tol, f"{case} output, round {round_}")
            dy = rng.standard_normal(y.shape).astype(dtype)
            dx = layer.backward(dy)
            yt.backward(_to_torch(torch, dy))
            assert_close(dx, xt.grad.numpy(), tol, f"{case} dx, round {round_}")
            for (name, p), tp in zip(layer.named_parameters(), twin.parameters()):
                assert_close(p.grad, tp.grad.numpy(), tol, f"{case} {name}.grad")
                tp.grad = None
            state, twin_state = layer.state_dict(), twin.state_dict()
            assert list(state) == list(twin_state)
            for key in state:
                assert_close(state[key], twin_state[key].numpy(), tol, f"{case} {key}")


@pytest.mark.parametrize("options", [{}, {"reduction": "sum"}, {"label_smoothing": 0.2},
                                     {"ignore_index": 2}, {"reduction": "none"}],
                         ids=str)
def test_softmax_cross_entropy_matches_torch(options, backend, dtype):
    torch = _torch()
    rng = np.random.default_rng(22)
    logits = rng.standard_normal((9, 4)).astype(dtype) * 3
    target = rng.integers(0, 4, 9)
    weight = rng.uniform(0.5, 2, 4)
    criterion = nn.SoftmaxCrossEntropy(weight=weight, **options)
    tl = _to_torch(torch, logits).requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(
        tl, torch.tensor(target), weight=_to_torch(torch, weight.astype(dtype)), **options)
    with fastnn.use_backend(backend):
        loss = criterion(logits, target)
        grad = criterion.backward()
    if options.get("reduction") == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == (9,)
        expected.sum().backward()
    else:
        assert type(loss) is float
        expected.backward()
    tol = torch_tolerance(dtype)
    assert_close(loss, expected.detach().numpy(), tol, "loss")
    assert_close(grad, tl.grad.numpy(), tol, "dlogits")


def test_softmax_cross_entropy_backward_scales_and_evaluates(backend):
    rng = np.random.default_rng(23)
    logits = rng.standard_normal((5, 3))
    target = rng.integers(0, 3, 5)
    criterion = nn.SoftmaxCrossEntropy()
    with fastnn.use_backend(backend):
        criterion(logits, target)
        base = criterion.backward().copy()
        assert_close(criterion.backward(2.5), 2.5 * base, tolerance(np.float64), "scaled")
        criterion.eval()
        loss = criterion(logits, target)
        assert criterion.dlogits is None, "evaluation computes no gradient"
        assert_close(criterion.backward(), base, tolerance(np.float64), "on demand")
        assert loss == pytest.approx(float(fastnn.softmax_cross_entropy(logits, target)))
        none = nn.SoftmaxCrossEntropy(reduction="none")
        none(logits, target)
        weights = rng.uniform(size=5)
        assert_close(none.backward(weights), base * 5 * weights[:, None],
                     tolerance(np.float64), "per-row grad_loss")


def test_fused_sequential_is_one_kernel_call_per_pair(monkeypatch):
    """Linear then ReLU: one linear_forward with activation='relu', no separate ReLU."""
    calls = []
    original = fastnn.linear_forward

    def counting(*args, **kwargs):
        calls.append(kwargs.get("activation"))
        return original(*args, **kwargs)

    monkeypatch.setattr(fastnn, "linear_forward", counting)
    model = nn.Sequential(nn.Linear(4, 5, seed=0), nn.ReLU(), nn.Linear(5, 2, seed=1))
    model(np.ones((3, 4), np.float32))
    assert calls == ["relu", None]


def test_backend_choice_applies_to_layers(monkeypatch):
    """use_backend reaches the kernels the layers call."""
    from fastnn import _registry
    seen = []
    original = _registry.kernel

    def spying(name, backend=None):
        seen.append(fastnn.get_backend() if backend is None else backend)
        return original(name, backend)

    monkeypatch.setattr(_registry, "kernel", spying)
    model = nn.Sequential(nn.Linear(4, 5, bias=False, seed=0), nn.BatchNorm(5), nn.ReLU())
    with fastnn.use_backend("numpy"):
        model(np.ones((3, 4), np.float32))
        model.backward(np.ones((3, 5), np.float32))
    assert seen and set(seen) == {"numpy"}


def test_sequential_keeps_caller_visible_arrays_fresh():
    """The output handed back and the input gradient are never reused buffers."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False, seed=0), nn.BatchNorm(4), nn.ReLU(),
                          nn.BatchNorm(4))
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal((6, 3)).astype(np.float32)
    y1 = model(x1)
    kept = y1.copy()
    dx1 = model.backward(np.ones_like(y1))
    kept_dx = dx1.copy()
    model(rng.standard_normal((6, 3)).astype(np.float32))
    model.backward(np.ones_like(y1))
    np.testing.assert_array_equal(y1, kept)
    np.testing.assert_array_equal(dx1, kept_dx)


# ----------------------------------------------------------- initialization

def test_linear_initialization_is_pytorchs_default_and_seeded():
    layer = nn.Linear(400, 300, seed=7)
    bound = 1 / np.sqrt(400)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
        assert np.abs(p).max() > 0.95 * bound          # fills the whole range
        assert abs(p.mean()) < 5 * bound / np.sqrt(3 * p.size)    # five standard errors
    # Uniform in +-b has variance b^2 / 3.
    assert layer.weight.data.var() == pytest.approx(bound ** 2 / 3, rel=0.02)
    again = nn.Linear(400, 300, seed=7)
    np.testing.assert_array_equal(layer.weight.data, again.weight.data)
    assert not np.array_equal(layer.weight.data, nn.Linear(400, 300, seed=8).weight.data)
    shared = np.random.default_rng(3)
    a, b = nn.Linear(4, 4, seed=shared), nn.Linear(4, 4, seed=shared)
    assert not np.array_equal(a.weight.data, b.weight.data)
    assert nn.Linear(4, 4, dtype=np.float64).weight.dtype == np.float64


def test_batchnorm_initial_state():
    layer = nn.BatchNorm(5)
    np.testing.assert_array_equal(layer.weight.data, np.ones(5, np.float32))
    np.testing.assert_array_equal(layer.bias.data, np.zeros(5, np.float32))
    np.testing.assert_array_equal(layer.running_mean, np.zeros(5, np.float32))
    np.testing.assert_array_equal(layer.running_var, np.ones(5, np.float32))
    assert layer.num_batches_tracked.dtype == np.int64 and layer.num_batches_tracked == 0
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [name for name, _ in layer.named_buffers()] == [
        "running_mean", "running_var", "num_batches_tracked"]
    assert nn.BatchNorm(5, track_running_stats=False).named_buffers() == []


def test_batchnorm_cumulative_average():
    """momentum=None: the running mean is the plain mean of the batch means."""
    layer = nn.BatchNorm(3, momentum=None, dtype=np.float64)
    rng = np.random.default_rng(4)
    means = []
    for _ in range(5):
        x = rng.standard_normal((6, 3)) + rng.uniform(-2, 2)
        means.append(x.mean(axis=0))
        layer(x)
    assert int(layer.num_batches_tracked) == 5
    assert_close(layer.running_mean, np.mean(means, axis=0), tolerance(np.float64))


def test_train_eval_flags():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm(2), nn.ReLU()))
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match=r"^mode\b"):
        model.train("yes")


def test_zero_grad_and_parameter_names():
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm(4), nn.ReLU(),
                          nn.Linear(4, 2))
    assert [n for n, _ in model.named_parameters()] == [
        "0.weight", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert "1.running_mean" in dict(model.named_buffers())
    model(np.ones((2, 3), np.float32))
    model.backward(np.ones((2, 2), np.float32))
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# -------------------------------------------------------------- bad input

def _state_of(layer):
    return {k: v.copy() for k, v in layer.state_dict().items()}


BAD_INPUTS = [
    ("linear-features", lambda: nn.Linear(4, 3), lambda: np.ones((2, 5), np.float32),
     ValueError, "x"),
    ("linear-1d", lambda: nn.Linear(4, 3), lambda: np.ones(4, np.float32), ValueError, "x"),
    ("linear-dtype", lambda: nn.Linear(4, 3), lambda: np.ones((2, 4)), TypeError, "x"),
    ("batchnorm-channels", lambda: nn.BatchNorm(4), lambda: np.ones((3, 5), np.float32),
     ValueError, "x"),
    ("batchnorm-channels-NCHW", lambda: nn.BatchNorm(4),
     lambda: np.ones((3, 5, 2, 2), np.float32), ValueError, "x"),
    ("batchnorm-dtype", lambda: nn.BatchNorm(4), lambda: np.ones((3, 4)), TypeError, "x"),
    ("batchnorm-one-value", lambda: nn.BatchNorm(4), lambda: np.ones((1, 4), np.float32),
     ValueError, "x"),
    ("relu-int", lambda: nn.ReLU(), lambda: np.ones((2, 2), np.int64), TypeError, "x"),
    ("sequential-features", lambda: nn.Sequential(nn.Linear(4, 3), nn.BatchNorm(3)),
     lambda: np.ones((2, 6), np.float32), ValueError, "x"),
]


@pytest.mark.parametrize("desc, make, make_x, error, name", BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_forward_input(desc, make, make_x, error, name):
    layer = make()
    before = _state_of(layer)
    with pytest.raises(error, match=rf"^{name}\b.*expected.*got"):
        layer(make_x())
    after = layer.state_dict()
    assert list(before) == list(after)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


@pytest.mark.parametrize("make", [lambda: nn.Linear(3, 2), lambda: nn.BatchNorm(3),
                                  lambda: nn.ReLU(), lambda: nn.Sequential(nn.Linear(3, 2)),
                                  lambda: nn.SoftmaxCrossEntropy()],
                         ids=["linear", "batchnorm", "relu", "sequential", "loss"])
def test_backward_before_forward(make):
    layer = make()
    with pytest.raises(RuntimeError, match=r"backward: expected a forward call first"):
        layer.backward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("grad, error", [(np.ones((4, 3), np.float32), ValueError),
                                         (np.ones((2, 3)), TypeError)],
                         ids=["shape", "dtype"])
def test_bad_grad_output(grad, error):
    for layer in (nn.Linear(5, 3), nn.BatchNorm(3)):
        x = np.ones((2, 5 if isinstance(layer, nn.Linear) else 3), np.float32)
        layer(x)
        grads_before = [p.grad for p in layer.parameters()]
        with pytest.raises(error, match=r"^grad_output\b.*expected.*got"):
            layer.backward(grad)
        assert [p.grad for p in layer.parameters()] == grads_before


@pytest.mark.parametrize("make, error, name", [
    (lambda: nn.Linear(0, 3), ValueError, "in_features"),
    (lambda: nn.Linear(3, 2.5), TypeError, "out_features"),
    (lambda: nn.Linear(3, 2, bias="no"), TypeError, "bias"),
    (lambda: nn.Linear(3, 2, dtype=np.int32), TypeError, "dtype"),
    (lambda: nn.BatchNorm(3, eps=-1), ValueError, "eps"),
    (lambda: nn.BatchNorm(3, momentum=2), ValueError, "momentum"),
    (lambda: nn.BatchNorm(3, affine=1), TypeError, "affine"),
    (lambda: nn.Sequential(nn.Linear(2, 2), "relu"), TypeError, r"layers\[1\]"),
    (lambda: nn.SoftmaxCrossEntropy(reduction="avg"), ValueError, "reduction"),
    (lambda: nn.SoftmaxCrossEntropy(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: nn.SoftmaxCrossEntropy(weight=[[1.0]]), TypeError, "weight"),
])
def test_bad_construction(make, error, name):
    with pytest.raises(error, match=rf"^{name}"):
        make()
