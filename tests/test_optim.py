"""fastnn.optim: SGD, Adam, AdamW, StepLR, CosineAnnealingLR.

- each optimizer's updates against torch.optim's (when installed), step by
  step, both dtypes, every backend, parameters without a gradient skipped;
- the one-call path of small groups gives the bits of the per-parameter path;
- the trajectory test: one MLP with BatchNorm built in both libraries from
  the same state_dict, trained 20 steps on the same batches, gives the same
  losses and final parameters (SGD with momentum, Nesterov and weight decay;
  Adam and AdamW with a schedule);
- schedules give torch's learning rates, also after a changed lr;
- state_dict round trips (and resuming gives the uninterrupted updates);
- bad options and bad gradients raise before anything changes;
- the public kernels' signatures.
"""

import inspect

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

from .support import assert_close, tolerance

SHAPES = [(7, 5), (13,), (3, 2, 4), (1,)]

CONFIGS = {
    "sgd": (lambda p: optim.SGD(p, lr=0.1), "SGD", dict(lr=0.1)),
    "sgd-momentum-decay": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2),
                           "SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    "sgd-dampening": (lambda p: optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.8),
                      "SGD", dict(lr=0.05, momentum=0.8, dampening=0.8)),
    "sgd-nesterov": (lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                         weight_decay=1e-3),
                     "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (lambda p: optim.Adam(p, lr=1e-2), "Adam", dict(lr=1e-2)),
    "adam-decay-betas": (lambda p: optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-6,
                                              weight_decay=0.1),
                         "Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": (lambda p: optim.AdamW(p, lr=1e-2), "AdamW", dict(lr=1e-2)),
    "adamw-decay": (lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.3), "AdamW",
                    dict(lr=1e-2, weight_decay=0.3)),
}

# Several steps in float32: each rounds at 6e-8 relative, and an Adam step
# divides by sqrt(v) + eps, so gradient roundings reach the update.
STEPS_FLOAT32 = type(tolerance(np.float32))(rtol=1e-5, atol=1e-5)
STEPS_FLOAT64 = type(tolerance(np.float64))(rtol=1e-12, atol=1e-12)


def steps_tolerance(dtype):
    return STEPS_FLOAT32 if np.dtype(dtype) == np.float32 else STEPS_FLOAT64


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(shape).astype(dtype)) for shape in SHAPES]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_updates_match_torch(config, backend, dtype):
    torch = pytest.importorskip("torch")
    make, torch_name, torch_options = CONFIGS[config]
    params = _params(dtype)
    twins = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    optimizer = make(params)
    reference = getattr(torch.optim, torch_name)(twins, **torch_options)
    rng = np.random.default_rng(1)
    with fastnn.use_backend(backend):
        for step in range(6):
            for i, (p, t) in enumerate(zip(params, twins)):
                skipped = step == 2 and i == 1          # no gradient: not updated
                grad = None if skipped else rng.standard_normal(p.shape).astype(dtype)
                p.grad = grad
                t.grad = None if skipped else torch.tensor(grad)
            optimizer.step()
            reference.step()
            for i, (p, t) in enumerate(zip(params, twins)):
                assert_close(p.data, t.detach().numpy(), steps_tolerance(dtype),
                             f"{config} step {step} parameter {i}")


def test_one_call_path_gives_the_per_parameter_bits(monkeypatch, backend):
    """A small group updates in one kernel call over a flat buffer; the
    per-parameter path must give the very same bits."""
    results = []
    for flat_limit in (optim.FLAT_GRADS_MAX_ELEMENTS, 0):
        monkeypatch.setattr(optim, "FLAT_GRADS_MAX_ELEMENTS", flat_limit)
        for make in (lambda p: optim.Adam(p, lr=1e-2, weight_decay=0.1),
                     lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)):
            params = _params(np.float32)
            optimizer = make(params)
            assert (optimizer._segments[0][0].grad is None) == (flat_limit == 0)
            rng = np.random.default_rng(2)
            with fastnn.use_backend(backend):
                for _ in range(3):
                    for p in params:
                        p.grad = rng.standard_normal(p.shape).astype(np.float32)
                    optimizer.step()
            results.append([p.data.copy() for p in params])
    for single, separate in zip(results[:2], results[2:]):
        for a, b in zip(single, separate):
            assert a.tobytes() == b.tobytes()


def test_packing_keeps_values_and_follows_replaced_data():
    params = _params(np.float64)
    values = [p.data.copy() for p in params]
    optimizer = optim.SGD(params, lr=1.0)
    for p, value in zip(params, values):
        np.testing.assert_array_equal(p.data, value)
    params[0].data = np.zeros(params[0].shape)      # the user rebinds a parameter
    for p in params:
        p.grad = np.ones(p.shape)
    optimizer.step()
    np.testing.assert_array_equal(params[0].data, -np.ones(params[0].shape))
    np.testing.assert_array_equal(params[1].data, values[1] - 1)


# --------------------------------------------------------------- trajectory

def _mlp(dtype):
    rng = np.random.default_rng(7)
    return nn.Sequential(nn.Linear(10, 16, bias=False, dtype=dtype, seed=rng),
                         nn.BatchNorm(16, dtype=dtype), nn.ReLU(),
                         nn.Linear(16, 12, bias=False, dtype=dtype, seed=rng),
                         nn.BatchNorm(12, dtype=dtype), nn.ReLU(),
                         nn.Linear(12, 4, dtype=dtype, seed=rng))


TRAJECTORIES = {
    "sgd-nesterov-decay": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        None),
    "sgd-momentum-steplr": (
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
        lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
        ("StepLR", dict(step_size=2, gamma=0.5))),
    "adam-steplr": (
        lambda p: optim.Adam(p, lr=3e-3, weight_decay=1e-3),
        lambda t, p: t.optim.Adam(p, lr=3e-3, weight_decay=1e-3),
        ("StepLR", dict(step_size=2, gamma=0.5))),
    "adamw-cosine": (
        lambda p: optim.AdamW(p, lr=3e-3, weight_decay=0.05),
        lambda t, p: t.optim.AdamW(p, lr=3e-3, weight_decay=0.05),
        ("CosineAnnealingLR", dict(T_max=4, eta_min=1e-4))),
}


@pytest.mark.parametrize("case", sorted(TRAJECTORIES))
def test_trajectory_matches_torch(case, backend, dtype):
    """20 steps (a schedule step every 4) from the same state_dict on the same batches."""
    torch = pytest.importorskip("torch")
    make, make_torch, schedule = TRAJECTORIES[case]
    model = _mlp(dtype)
    twin = torch.nn.Sequential(torch.nn.Linear(10, 16, bias=False), torch.nn.BatchNorm1d(16),
                               torch.nn.ReLU(), torch.nn.Linear(16, 12, bias=False),
                               torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
                               torch.nn.Linear(12, 4))
    twin = twin.to(torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    optimizer, reference = make(model.parameters()), make_torch(torch, twin.parameters())
    schedulers = (None, None)
    if schedule:
        name, options = schedule
        schedulers = (getattr(optim, name)(optimizer, **options),
                      getattr(torch.optim.lr_scheduler, name)(reference, **options))
    criterion = nn.SoftmaxCrossEntropy()
    rng = np.random.default_rng(8)
    losses, torch_losses = [], []
    with fastnn.use_backend(backend):
        for step in range(20):
            x = rng.standard_normal((16, 10)).astype(dtype)
            y = rng.integers(0, 4, 16)
            optimizer.zero_grad()
            losses.append(criterion(model(x), y))
            model.backward(criterion.backward(), need_input_grad=False)
            optimizer.step()
            reference.zero_grad()
            loss = torch.nn.functional.cross_entropy(twin(torch.tensor(x)), torch.tensor(y))
            loss.backward()
            reference.step()
            torch_losses.append(loss.item())
            if schedule and step % 4 == 3:
                for scheduler in schedulers:
                    scheduler.step()
    # 20 steps compound the rounding of each (float32: about 1e-6 per step).
    tol = (type(tolerance(dtype))(rtol=2e-4, atol=2e-4) if np.dtype(dtype) == np.float32
           else type(tolerance(dtype))(rtol=1e-9, atol=1e-9))
    assert_close(np.array(losses), np.array(torch_losses), tol, f"{case} losses")
    twin_state = twin.state_dict()
    for key, value in model.state_dict().items():
        assert_close(value, twin_state[key].numpy(), tol, f"{case} final {key}")
    if schedule:
        assert schedulers[0].get_last_lr() == pytest.approx(schedulers[1].get_last_lr())


# ------------------------------------------------------------------ schedules

@pytest.mark.parametrize("name, options", [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("StepLR", dict(step_size=1, gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=5)),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01)),
], ids=["step-3", "step-1", "cosine", "cosine-eta-min"])
def test_schedules_match_torch(name, options):
    torch = pytest.importorskip("torch")
    optimizer = optim.SGD(_params(np.float64), lr=0.2)
    reference = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.2)
    ours = getattr(optim, name)(optimizer, **options)
    theirs = getattr(torch.optim.lr_scheduler, name)(reference, **options)
    reference.step()        # torch warns about a schedule stepped before its optimizer
    for epoch in range(1, 21):
        if epoch == 12:                     # the lr changed by hand carries on
            optimizer.param_groups[0]["lr"] = 0.05
            reference.param_groups[0]["lr"] = 0.05
        ours.step()
        theirs.step()
        assert optimizer.param_groups[0]["lr"] == pytest.approx(
            reference.param_groups[0]["lr"], rel=1e-12, abs=1e-15), f"epoch {epoch}"
    assert ours.last_epoch == theirs.last_epoch == 20


def test_schedule_state_round_trip():
    optimizer = optim.Adam(_params(np.float32), lr=0.1)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=6)
    for _ in range(3):
        scheduler.step()
    state = scheduler.state_dict()
    other_optimizer = optim.Adam(_params(np.float32), lr=0.1)
    other = optim.CosineAnnealingLR(other_optimizer, T_max=6)
    other.load_state_dict(state)
    other_optimizer.param_groups[0]["lr"] = optimizer.param_groups[0]["lr"]
    scheduler.step()
    other.step()
    assert other_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


# ----------------------------------------------------------------- state

@pytest.mark.parametrize("config", ["sgd-nesterov", "adam-decay-betas", "adamw"])
def test_state_dict_round_trip_resumes_exactly(config, backend):
    make = CONFIGS[config][0]
    rng = np.random.default_rng(4)
    grads = [[rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]
             for _ in range(6)]
    params = _params(np.float32)
    optimizer = make(params)
    with fastnn.use_backend(backend):
        for step in range(3):
            for p, g in zip(params, grads[step]):
                p.grad = g
            optimizer.step()
        state = optimizer.state_dict()
        copies = [nn.Parameter(p.data.copy()) for p in params]
        resumed = make(copies)
        resumed.load_state_dict(state)
        for step in range(3, 6):
            for p, c, g in zip(params, copies, grads[step]):
                p.grad = g
                c.grad = g
            optimizer.step()
            resumed.step()
    for p, c in zip(params, copies):
        assert p.data.tobytes() == c.data.tobytes()
    assert set(state) == {"state", "param_groups"}
    assert state["param_groups"][0]["params"] == [0, 1, 2, 3]
    names = {"SGD": {"momentum_buffer"}, "Adam": {"step", "exp_avg", "exp_avg_sq"},
             "AdamW": {"step", "exp_avg", "exp_avg_sq"}}[CONFIGS[config][1]]
    assert set(state["state"][0]) == names


def test_state_dict_matches_torch_layout():
    torch = pytest.importorskip("torch")
    params = _params(np.float32)
    twins = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    optimizer, reference = optim.Adam(params), torch.optim.Adam(twins)
    for p, t in zip(params, twins):
        p.grad = np.ones(p.shape, np.float32)
        t.grad = torch.ones(t.shape)
    optimizer.step()
    reference.step()
    ours, theirs = optimizer.state_dict(), reference.state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for i, entry in theirs["state"].items():
        assert set(ours["state"][i]) == set(entry)
        assert ours["state"][i]["step"] == int(entry["step"])
        np.testing.assert_allclose(ours["state"][i]["exp_avg"], entry["exp_avg"].numpy())
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]
    assert ours["param_groups"][0]["betas"] == tuple(theirs["param_groups"][0]["betas"])


def test_load_state_dict_rejects_mismatches_and_changes_nothing():
    params = _params(np.float32)
    optimizer = optim.Adam(params, lr=0.01)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    optimizer.step()
    before = optimizer.state_dict()
    bad_shape = optimizer.state_dict()
    bad_shape["state"][1]["exp_avg"] = np.zeros(3, np.float32)
    bad_count = optimizer.state_dict()
    bad_count["param_groups"][0]["params"] = [0, 1]
    bad_lr = optimizer.state_dict()
    bad_lr["param_groups"][0]["lr"] = -1.0
    for bad, match in ((bad_shape, "state_dict"), (bad_count, "state_dict"),
                       (bad_lr, "lr"), ({"state": {}}, "state_dict")):
        with pytest.raises(ValueError, match=rf"^{match}"):
            optimizer.load_state_dict(bad)
        after = optimizer.state_dict()
        assert after["param_groups"] == before["param_groups"]
        for i, entry in before["state"].items():
            np.testing.assert_array_equal(after["state"][i]["exp_avg"], entry["exp_avg"])


# ------------------------------------------------------------- bad input

@pytest.mark.parametrize("make, error, name", [
    (lambda p: optim.SGD(p, lr=-0.1), ValueError, "lr"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-1), ValueError, "momentum"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     ValueError, "nesterov"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda p: optim.Adam(p, betas=0.9), TypeError, "betas"),
    (lambda p: optim.Adam(p, eps=-1.0), ValueError, "eps"),
    (lambda p: optim.AdamW(p, lr="fast"), TypeError, "lr"),
    (lambda p: optim.Adam([]), ValueError, "params"),
    (lambda p: optim.Adam(p + p), ValueError, "params"),
    (lambda p: optim.Adam([np.ones(3)]), TypeError, "params"),
    (lambda p: optim.Adam([{"params": p, "momentum": 0.9}]), ValueError, "momentum"),
    (lambda p: optim.StepLR(optim.SGD(p, lr=0.1), step_size=0), ValueError, "step_size"),
    (lambda p: optim.CosineAnnealingLR(optim.SGD(p, lr=0.1), T_max=2.5), TypeError, "T_max"),
    (lambda p: optim.StepLR("optimizer", step_size=2), TypeError, "optimizer"),
])
def test_bad_options(make, error, name):
    with pytest.raises(error, match=rf"^{name}.*expected.*got"):
        make(_params(np.float32))


@pytest.mark.parametrize("grad, error", [(np.ones(4, np.float32), ValueError),
                                         (np.ones((7, 5)), TypeError)],
                         ids=["shape", "dtype"])
def test_bad_gradient_changes_nothing(grad, error):
    params = _params(np.float32)
    optimizer = optim.Adam(params)
    for p in params[1:]:
        p.grad = np.ones(p.shape, np.float32)
    params[0].grad = grad
    before = [p.data.copy() for p in params]
    with pytest.raises(error, match=r"^grad: expected"):
        optimizer.step()
    for p, value in zip(params, before):
        np.testing.assert_array_equal(p.data, value)
    assert optimizer.state_dict()["state"] == {}


def test_param_groups_and_model_argument():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    optimizer = optim.SGD([{"params": model[0].parameters(), "lr": 0.5},
                           {"params": model[1].parameters()}], lr=0.1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.1]
    both = optim.Adam(model)
    assert len(both.param_groups[0]["params"]) == 4
    before = model[0].weight.data.copy()
    for p in model.parameters():
        p.grad = np.ones(p.shape, np.float32)
    optimizer.step()
    np.testing.assert_allclose(model[0].weight.data, before - 0.5)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_course_momentum_form():
    """The course's v = beta v + (1 - beta) dW from v = 0 is SGD(momentum=beta,
    dampening=beta) once the first step has set the buffer to (1 - beta) dW."""
    beta, lr = 0.9, 0.1
    rng = np.random.default_rng(6)
    grads = [rng.standard_normal(5) for _ in range(5)]
    p = nn.Parameter(np.zeros(5))
    optimizer = optim.SGD([p], lr=lr, momentum=beta, dampening=beta)
    course_w, velocity = np.zeros(5), np.zeros(5)
    for step, g in enumerate(grads):
        velocity = beta * velocity + (1 - beta) * g
        course_w -= lr * velocity
        p.grad = (1 - beta) * g if step == 0 else g     # PyTorch's buffer starts at g
        optimizer.step()
        if step == 0:
            p.data[...] = course_w                      # align the first step's update
    np.testing.assert_allclose(p.data, course_w, rtol=1e-12, atol=1e-12)


SIGNATURES = {
    "sgd_step": "(param, grad, momentum_buffer=None, *, lr, momentum=0.0, dampening=0.0, "
                "nesterov=False, weight_decay=0.0, first_step=False, backend=None)",
    "adam_step": "(param, grad, exp_avg, exp_avg_sq, *, step, lr=0.001, beta1=0.9, "
                 "beta2=0.999, eps=1e-08, weight_decay=0.0, decoupled=False, backend=None)",
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_public_kernel_signatures(name):
    assert str(inspect.signature(getattr(fastnn, name))) == SIGNATURES[name]
    assert getattr(fastnn, name).__doc__
