"""The training-step entry: one whole step of a batch-normalized MLP with Adam.

The model (a size's shape is ``(N, K, H, C)``)::

    x (N, K) -> Linear(H, no bias) -> BatchNorm(H) -> ReLU
             -> Linear(H, no bias) -> BatchNorm(H) -> ReLU -> Linear(C)
             -> softmax cross-entropy (mean) against target (N,)

and one step is what a training loop does per batch: zero the gradients,
forward, loss, backward (no gradient for x), one Adam update of every
parameter (lr 1e-3, betas (0.9, 0.999), eps 1e-8), the batch norms'
running statistics moved too.

Contenders:

- ``numpy``: the step written in NumPy as a user would (``step_numpy``), on
  views of one flat parameter array; also the float64 oracle;
- ``fastnn[NAME]``: ``fastnn.nn`` layers, ``SoftmaxCrossEntropy`` and
  ``fastnn.optim.Adam``, under ``fastnn.use_backend(NAME)``;
- ``fastnn[NAME]+kernels``: the same kernel calls with the same arrays and
  nothing else (``fastnn.linear_forward`` ... ``fastnn.adam_step`` on
  buffers allocated once, the ReLUs as the layers do them in NumPy): the
  floor of the layers, optimizer and loop.  The step's median over this
  row's, minus one, is the framework's overhead;
- ``torch`` and ``torch+fused``: ``torch.nn`` and ``torch.optim.Adam``, its
  default (foreach) and ``fused=True``; the faster of the two is the
  PyTorch figure speedups are taken against.

All contenders start from the same parameters, batch norm statistics and
Adam state.  The state is that of step ``START_STEP`` (both moments set
from the gradient at the start, see ``_inputs``) rather than empty: Adam's
first step moves every weight by about lr times the sign of its gradient,
so a gradient near zero whose sign differs between float32 and the float64
reference would move that weight by 2 lr, far beyond any tolerance; from
a warm state the update is a smooth function of the gradient.

Cost: the flops of the products (forward 2 N (K H + H H + H C), the weight
gradients as many again, the input gradients of the second and third layer
2 N (H H + H C)), so ``%roof`` is the share of the measured GEMM rate: how
close the step is to the time of its matrix products.
"""

import numpy as np

from ._kernel import Flops, Kernel, Size

LR, BETA1, BETA2, ADAM_EPS = 1e-3, 0.9, 0.999, 1e-8
BN_EPS, BN_MOMENTUM = 1e-5, 0.1
START_STEP = 10


def _size(name, N, K, H, C):
    return Size(name, (N, K, H, C), f"{N}x{K}-{H}-{H}-{C}")


SIZES = (
    _size("tiny", 8, 16, 32, 10),
    _size("small-digits", 64, 64, 256, 10),         # the digits example's model and batch
    _size("small", 64, 784, 1024, 10),
    _size("medium", 1024, 784, 1024, 10),
)
# The test run's check, in float64: the digits example's model at its batch.
CHECK = SIZES[1]


def _shapes(K, H, C):
    """Parameter shapes in PyTorch's order: 0.weight, 1.weight, 1.bias,
    3.weight, 4.weight, 4.bias, 6.weight, 6.bias."""
    return [(H, K), (H,), (H,), (H, H), (H,), (H,), (C, H), (C,)]


def _split(flat, widths):
    """Views of ``flat``, one per parameter (``widths`` is ``[K, H, C]``)."""
    views, start = [], 0
    for shape in _shapes(*(int(w) for w in widths)):
        stop = start + int(np.prod(shape))
        views.append(flat[start:stop].reshape(shape))
        start = stop
    return views


# ----------------------------------------------------------------------------
# The idiomatic NumPy step

def _batchnorm_forward(h, gamma, beta, running_mean, running_var):
    mean = h.mean(axis=0)
    var = h.var(axis=0)
    invstd = 1 / np.sqrt(var + BN_EPS)
    xhat = (h - mean) * invstd
    n = len(h)
    running_mean *= 1 - BN_MOMENTUM
    running_mean += BN_MOMENTUM * mean
    running_var *= 1 - BN_MOMENTUM
    running_var += BN_MOMENTUM * var * n / (n - 1)
    return xhat * gamma + beta, xhat, invstd


def _batchnorm_backward(dz, xhat, invstd, gamma):
    dgamma = (dz * xhat).sum(axis=0)
    dbeta = dz.sum(axis=0)
    dxhat = dz * gamma
    dh = invstd * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    return dh, dgamma, dbeta


def _loss_and_gradients(x, target, params, running):
    """``(loss, [gradient per parameter])``; moves the running statistics."""
    w1, g1, b1, w2, g2, b2, w3, b3 = params
    rm1, rv1, rm2, rv2 = running
    h1 = x @ w1.T
    z1, xhat1, invstd1 = _batchnorm_forward(h1, g1, b1, rm1, rv1)
    a1 = np.maximum(z1, 0)
    h2 = a1 @ w2.T
    z2, xhat2, invstd2 = _batchnorm_forward(h2, g2, b2, rm2, rv2)
    a2 = np.maximum(z2, 0)
    logits = a2 @ w3.T + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(x))
    loss = -log_probs[rows, target].mean()
    dlogits = np.exp(log_probs)
    dlogits[rows, target] -= 1
    dlogits /= len(x)
    dw3, db3 = dlogits.T @ a2, dlogits.sum(axis=0)
    dz2 = (dlogits @ w3) * (z2 > 0)
    dh2, dg2, db2 = _batchnorm_backward(dz2, xhat2, invstd2, g2)
    dw2 = dh2.T @ a1
    dz1 = (dh2 @ w2) * (z1 > 0)
    dh1, dg1, db1 = _batchnorm_backward(dz1, xhat1, invstd1, g1)
    dw1 = dh1.T @ x
    return loss, [dw1, dg1, db1, dw2, dg2, db2, dw3, db3]


def step_numpy(x, target, params, exp_avg, exp_avg_sq, running, step, widths):
    """One step, in place on ``params``, the Adam moments, ``running`` and ``step``."""
    views = _split(params, widths)
    H = int(widths[1])
    loss, grads = _loss_and_gradients(x, target, views, running.reshape(4, H))
    step[0] += 1
    t = int(step[0])
    step_size = LR / (1 - BETA1 ** t)
    correction2 = np.sqrt(1 - BETA2 ** t)
    for p, g, m, v in zip(views, grads, _split(exp_avg, widths), _split(exp_avg_sq, widths)):
        m *= BETA1
        m += (1 - BETA1) * g
        v *= BETA2
        v += (1 - BETA2) * g * g
        p -= step_size * m / (np.sqrt(v) / correction2 + ADAM_EPS)
    return np.asarray(loss, params.dtype), (params, running)


# ----------------------------------------------------------------------------
# Inputs

def _inputs(shape, dtype, rng):
    N, K, H, C = shape
    widths = np.array([K, H, C], np.int64)
    params = []
    for parameter_shape in _shapes(K, H, C):
        if len(parameter_shape) == 2:               # PyTorch's default: U(+-1/sqrt(fan_in))
            bound = 1 / np.sqrt(parameter_shape[1])
            params.append(rng.uniform(-bound, bound, parameter_shape))
        elif parameter_shape == (C,):               # the last Linear's bias
            params.append(rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), C))
        else:                                       # batch norm's gamma, beta
            params.append(rng.uniform(-0.1, 0.1, H) + (1.0 if len(params) % 3 == 1 else 0.0))
    flat = np.concatenate([p.reshape(-1) for p in params])
    x = rng.standard_normal((N, K))
    target = rng.integers(0, C, N).astype(np.int64)
    running = np.concatenate([np.zeros(H), np.ones(H)] * 2)
    # A warm Adam state (see the module's header): each parameter's moments
    # as if its gradients had kept the size they have now.  The corrected
    # second moment is 4x the mean squared gradient, so an update's
    # sensitivity to its gradient is a fraction of lr per gradient scale.
    _, grads = _loss_and_gradients(x, target, _split(flat.copy(), widths),
                                   running.copy().reshape(4, H))
    first, second = [], []
    for g in grads:
        ms = float(np.mean(g * g)) or 1.0
        noise = rng.standard_normal(g.shape)
        first.append(((1 - BETA1 ** START_STEP) * 0.5 * np.sqrt(ms) * noise).reshape(-1))
        second.append(np.full(g.size, (1 - BETA2 ** START_STEP) * 4 * ms))
    return {"x": x.astype(dtype), "target": target, "params": flat.astype(dtype),
            "exp_avg": np.concatenate(first).astype(dtype),
            "exp_avg_sq": np.concatenate(second).astype(dtype),
            "running": running.astype(dtype), "step": np.array([START_STEP], np.int64),
            "widths": widths}


# ----------------------------------------------------------------------------
# fastnn: the layers and the optimizer, and the kernel calls alone

def _fastnn_model(inputs):
    from fastnn import nn, optim
    K, H, C = (int(w) for w in inputs["widths"])
    dtype = inputs["params"].dtype
    model = nn.Sequential(nn.Linear(K, H, bias=False, dtype=dtype, seed=0),
                          nn.BatchNorm(H, eps=BN_EPS, momentum=BN_MOMENTUM, dtype=dtype),
                          nn.ReLU(),
                          nn.Linear(H, H, bias=False, dtype=dtype, seed=1),
                          nn.BatchNorm(H, eps=BN_EPS, momentum=BN_MOMENTUM, dtype=dtype),
                          nn.ReLU(),
                          nn.Linear(H, C, dtype=dtype, seed=2))
    running = inputs["running"].reshape(4, H)
    state = dict(zip([name for name, _ in model.named_parameters()],
                     _split(inputs["params"], inputs["widths"])))
    state.update({"1.running_mean": running[0], "1.running_var": running[1],
                  "4.running_mean": running[2], "4.running_var": running[3],
                  "1.num_batches_tracked": np.zeros((), np.int64),
                  "4.num_batches_tracked": np.zeros((), np.int64)})
    model.load_state_dict(state)
    optimizer = optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS)
    t = int(inputs["step"][0])
    moments = zip(_split(inputs["exp_avg"], inputs["widths"]),
                  _split(inputs["exp_avg_sq"], inputs["widths"]))
    optimizer.load_state_dict({
        "state": {i: {"step": t, "exp_avg": m.copy(), "exp_avg_sq": v.copy()}
                  for i, (m, v) in enumerate(moments)},
        "param_groups": [dict(lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, weight_decay=0.0,
                              params=list(range(8)))]})
    return model, nn.SoftmaxCrossEntropy(), optimizer


def _step_fastnn(inputs, backend, out):
    import fastnn
    model, criterion, optimizer = _fastnn_model(inputs)
    x, target = inputs["x"], inputs["target"]

    def step():
        with fastnn.use_backend(backend):
            optimizer.zero_grad()
            loss = criterion(model(x), target)
            model.backward(criterion.backward(), need_input_grad=False)
            optimizer.step()
        return loss, model
    return step


class _KernelState:
    """What the layers would hold, as plain arrays (the kernels-only row)."""

    def __init__(self, inputs):
        K, H, C = (int(w) for w in inputs["widths"])
        dtype = inputs["params"].dtype
        N = len(inputs["x"])
        self.params = _split(inputs["params"].copy(), inputs["widths"])
        self.exp_avg = _split(inputs["exp_avg"].copy(), inputs["widths"])
        self.exp_avg_sq = _split(inputs["exp_avg_sq"].copy(), inputs["widths"])
        self.running = inputs["running"].copy().reshape(4, H)
        self.grads = [np.empty_like(p) for p in self.params]
        self.step = int(inputs["step"][0])
        empty = lambda *shape: np.empty(shape, dtype)       # noqa: E731
        self.h1, self.z1, self.h2, self.z2 = (empty(N, H) for _ in range(4))
        self.logits, self.dlogits = empty(N, C), empty(N, C)
        self.da2, self.dh2, self.da1, self.dh1 = (empty(N, H) for _ in range(4))


def _step_kernels(inputs, backend):
    import fastnn
    s = _KernelState(inputs)
    x, target = inputs["x"], inputs["target"]
    w1, g1, b1, w2, g2, b2, w3, b3 = s.params
    dw1, dw2, dw3, db3 = s.grads[0], s.grads[3], s.grads[6], s.grads[7]
    rm1, rv1, rm2, rv2 = s.running
    linear_forward, linear_backward = fastnn.linear_forward, fastnn.linear_backward
    batchnorm_forward, batchnorm_backward = fastnn.batchnorm_forward, fastnn.batchnorm_backward
    adam_step, cross_entropy = fastnn.adam_step, fastnn.softmax_cross_entropy_with_grad
    maximum, multiply = np.maximum, np.multiply
    params, exp_avg, exp_avg_sq = s.params, s.exp_avg, s.exp_avg_sq

    def step():
        linear_forward(x, w1, out=s.h1, backend=backend)
        _, mean1, invstd1 = batchnorm_forward(s.h1, g1, b1, rm1, rv1, training=True,
                                              momentum=BN_MOMENTUM, eps=BN_EPS, out=s.z1,
                                              backend=backend)
        maximum(s.z1, 0, out=s.z1)
        linear_forward(s.z1, w2, out=s.h2, backend=backend)
        _, mean2, invstd2 = batchnorm_forward(s.h2, g2, b2, rm2, rv2, training=True,
                                              momentum=BN_MOMENTUM, eps=BN_EPS, out=s.z2,
                                              backend=backend)
        maximum(s.z2, 0, out=s.z2)
        linear_forward(s.z2, w3, b3, out=s.logits, backend=backend)
        loss, _ = cross_entropy(s.logits, target, out=s.dlogits, backend=backend)
        linear_backward(s.dlogits, s.z2, w3, out=(s.da2, dw3, db3), backend=backend)
        multiply(s.da2, s.z2 > 0, out=s.da2)
        _, grad_gamma2, grad_beta2 = batchnorm_backward(s.da2, s.h2, g2, mean2, invstd2,
                                                        out=s.dh2, backend=backend)
        linear_backward(s.dh2, s.z1, w2, has_bias=False, out=(s.da1, dw2, None),
                        backend=backend)
        multiply(s.da1, s.z1 > 0, out=s.da1)
        _, grad_gamma1, grad_beta1 = batchnorm_backward(s.da1, s.h1, g1, mean1, invstd1,
                                                        out=s.dh1, backend=backend)
        linear_backward(s.dh1, x, w1, has_bias=False, need_dx=False, out=(None, dw1, None),
                        backend=backend)
        s.step += 1
        grads = (dw1, grad_gamma1, grad_beta1, dw2, grad_gamma2, grad_beta2, dw3, db3)
        for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq):
            adam_step(p, g, m, v, step=s.step, lr=LR, beta1=BETA1, beta2=BETA2,
                      eps=ADAM_EPS, backend=backend)
        return loss, s
    return step


def _outputs(result, inputs):
    loss, where = result
    if isinstance(where, tuple):                    # the NumPy baseline
        params, running = where
    elif isinstance(where, _KernelState):
        params = np.concatenate([p.reshape(-1) for p in where.params])
        running = where.running.reshape(-1)
    else:                                           # a fastnn.nn model
        params = np.concatenate([p.data.reshape(-1) for p in where.parameters()])
        running = np.concatenate([where[i].running_mean if j == 0 else where[i].running_var
                                  for i in (1, 4) for j in (0, 1)])
    return _named(np.asarray(loss, params.dtype), params, running, inputs)


def _named(loss, params, running, inputs):
    """Each parameter apart (so each is compared at its own scale), and the statistics."""
    named = {"loss": loss, "running": running}
    names = ("0.weight", "1.weight", "1.bias", "3.weight", "4.weight", "4.bias", "6.weight",
             "6.bias")
    named.update(zip(names, _split(params, inputs["widths"])))
    return named


# ----------------------------------------------------------------------------
# PyTorch: torch.nn and torch.optim.Adam (default, or fused)

def _step_torch(torch, inputs, variant=None):
    K, H, C = (int(w) for w in inputs["widths"])
    nn = torch.nn
    dtype = {np.dtype(np.float32): torch.float32,
             np.dtype(np.float64): torch.float64}[inputs["params"].dtype]
    model = nn.Sequential(nn.Linear(K, H, bias=False), nn.BatchNorm1d(H, BN_EPS, BN_MOMENTUM),
                          nn.ReLU(), nn.Linear(H, H, bias=False),
                          nn.BatchNorm1d(H, BN_EPS, BN_MOMENTUM), nn.ReLU(),
                          nn.Linear(H, C)).to(dtype)
    running = inputs["running"].reshape(4, H)
    with torch.no_grad():
        for p, value in zip(model.parameters(), _split(inputs["params"], inputs["widths"])):
            p.copy_(torch.from_numpy(value))
        for layer, (mean, var) in zip((model[1], model[4]), (running[:2], running[2:])):
            layer.running_mean.copy_(torch.from_numpy(mean))
            layer.running_var.copy_(torch.from_numpy(var))
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS,
                                 **({"fused": True} if variant == "fused" else {}))
    t = float(inputs["step"][0])
    for p, m, v in zip(model.parameters(), _split(inputs["exp_avg"], inputs["widths"]),
                       _split(inputs["exp_avg_sq"], inputs["widths"])):
        optimizer.state[p] = {"step": torch.tensor(t, dtype=torch.float32),
                              "exp_avg": torch.from_numpy(m.copy()),
                              "exp_avg_sq": torch.from_numpy(v.copy())}
    x, target = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["target"])
    cross_entropy = nn.functional.cross_entropy

    def step():
        optimizer.zero_grad()
        loss = cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        return loss

    def outputs(loss):
        with torch.no_grad():
            params = torch.cat([p.reshape(-1) for p in model.parameters()]).numpy().copy()
            running = torch.cat([model[1].running_mean, model[1].running_var,
                                 model[4].running_mean, model[4].running_var]).numpy().copy()
        return _named(loss.detach().numpy().copy(), params, running, inputs)
    return step, outputs


def _flops(shape):
    N, K, H, C = shape
    return 2 * N * (2 * K * H + 3 * H * H + 3 * H * C)


KERNELS = (
    Kernel(
        name="train_step", family="training",
        api=("linear_forward", "linear_backward", "batchnorm_forward", "batchnorm_backward",
             "softmax_cross_entropy_with_grad", "adam_step"),
        title="one training step: zero_grad, forward, loss, backward, Adam "
              "(Linear-BN-ReLU x2, Linear, cross-entropy)",
        sizes=SIZES, quick=("small", "medium"), check_size=CHECK,
        inputs=_inputs, numpy=step_numpy, fastnn=_step_fastnn, torch=_step_torch,
        outputs=_outputs, cost=Flops("2 N (2 K H + 3 H H + 3 H C)", _flops),
        mutable=("params", "exp_avg", "exp_avg_sq", "running", "step"),
        variants=("kernels",), kernels_only=_step_kernels, torch_variants=("fused",)),
)
