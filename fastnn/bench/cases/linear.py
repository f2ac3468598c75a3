"""Linear layer entries: forward and backward, each plain and with the fused ReLU.

``y = relu?(x @ weight.T + bias)``, x ``(N, K)``, weight ``(M, K)``; a size's
shape is ``(N, K, M)``.  The NumPy baselines below are ``x @ w.T + b`` and
its backward, what a user writes.  Linear layers are compute-bound:
forward costs 2 N K M flops (one product), backward 4 N K M (dx = dy @ W and
dW = dy.T @ x); the bias, ReLU and bias-gradient work is not counted, so
its cost shows as lost GFLOP/s.  Each entry's ``bound`` is NumPy's bare
products ("gemm-only" rows): the floor a fused layer aims at.
"""

import numpy as np

from ._kernel import Flops, Kernel, Size, normal


def _size(name, N, K, M):
    return Size(name, (N, K, M), f"{N}x{K}->{M}")


SIZES = (
    _size("tiny", 8, 16, 16),
    _size("small", 64, 256, 256),
    _size("medium", 256, 1024, 1024),
    _size("large", 2048, 2048, 2048),
)
# The test run's check: a BLAS-sized product in float64.
CHECK = _size("check", 256, 256, 256)


# ----------------------------------------------------------------------------
# The idiomatic NumPy baselines

def forward_numpy(x, weight, bias):
    return x @ weight.T + bias


def relu_forward_numpy(x, weight, bias):
    return np.maximum(x @ weight.T + bias, 0)


def backward_numpy(dy, x, weight):
    return dy @ weight, dy.T @ x, dy.sum(axis=0)


def relu_backward_numpy(dy, x, weight, y):
    dy = dy * (y > 0)
    return dy @ weight, dy.T @ x, dy.sum(axis=0)


# ----------------------------------------------------------------------------
# Inputs, fastnn and PyTorch calls

def _forward_inputs(shape, dtype, rng):
    # Small multiples of powers of two: every product and sum of the
    # forward is exact in float32 and float64 whatever the summation order,
    # so all contenders agree exactly on the ReLU mask (y > 0) and the
    # backward comparisons are not disturbed by sign flips.
    N, K, M = shape
    return {"x": (rng.integers(-4, 5, (N, K)) / 4).astype(dtype),
            "weight": (rng.integers(-4, 5, (M, K)) / 8).astype(dtype),
            "bias": (rng.integers(-8, 9, M) / 16).astype(dtype)}


def _backward_inputs(relu):
    def inputs(shape, dtype, rng):
        arrays = _forward_inputs(shape, dtype, rng)
        forward = relu_forward_numpy if relu else forward_numpy
        arrays["y"] = forward(arrays["x"], arrays["weight"], arrays["bias"])
        arrays["dy"] = normal(rng, arrays["y"].shape, dtype)
        return arrays
    return inputs


def _forward_fastnn(relu):
    def prepare(inputs, backend, out):
        import fastnn
        x, w, b = inputs["x"], inputs["weight"], inputs["bias"]
        activation = "relu" if relu else None
        return lambda: fastnn.linear_forward(x, w, b, activation=activation, backend=backend)
    return prepare


def _forward_torch(relu):
    def prepare(torch, inputs):
        F = torch.nn.functional
        x, w, b = (torch.from_numpy(inputs[k]) for k in ("x", "weight", "bias"))
        if relu:
            call = lambda: F.relu(F.linear(x, w, b))     # noqa: E731
        else:
            call = lambda: F.linear(x, w, b)             # noqa: E731
        return call, lambda y: {"y": y.numpy()}
    return prepare


def _backward_fastnn(relu):
    def prepare(inputs, backend, out):
        import fastnn
        dy, x, w = inputs["dy"], inputs["x"], inputs["weight"]
        y = inputs["y"] if relu else None
        activation = "relu" if relu else None
        return lambda: fastnn.linear_backward(dy, x, w, y=y, activation=activation,
                                              has_bias=True, need_dx=True, backend=backend)
    return prepare


def _backward_torch(relu):
    def prepare(torch, inputs):
        # Autograd: the forward graph is built once, the timed call runs the
        # backward nodes only (ReLU mask, then the two products and the sum).
        F = torch.nn.functional
        x, w, b = (torch.from_numpy(inputs[k]).requires_grad_() for k in ("x", "weight", "bias"))
        y = F.linear(x, w, b)
        if relu:
            y = F.relu(y)
        dy = torch.from_numpy(inputs["dy"])

        def call():
            return torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)
        return call, lambda r: {"dx": r[0].numpy(), "dweight": r[1].numpy(),
                                "dbias": r[2].numpy()}
    return prepare


def _forward_bound(inputs):
    x, w = inputs["x"], inputs["weight"]
    return lambda: x @ w.T


def _backward_bound(inputs):
    dy, x, w = inputs["dy"], inputs["x"], inputs["weight"]
    return lambda: (dy @ w, dy.T @ x)


def _backward_outputs(result, inputs):
    dx, dweight, dbias = result
    return {"dx": dx, "dweight": dweight, "dbias": dbias}


def _flops(factor):
    def count(shape):
        N, K, M = shape
        return factor * N * K * M
    return count


def _forward(name, title, relu, numpy):
    return Kernel(
        name=name, family="linear", api="linear_forward", title=title,
        sizes=SIZES, quick=("tiny", "medium"), check_size=CHECK,
        inputs=_forward_inputs, numpy=numpy, fastnn=_forward_fastnn(relu),
        torch=_forward_torch(relu), outputs=lambda result, inputs: {"y": result},
        cost=Flops("2 N K M", _flops(2)), bound=_forward_bound)


def _backward(name, title, relu, numpy):
    return Kernel(
        name=name, family="linear", api="linear_backward", title=title,
        sizes=SIZES, quick=("tiny", "medium"), check_size=CHECK,
        inputs=_backward_inputs(relu), numpy=numpy, fastnn=_backward_fastnn(relu),
        torch=_backward_torch(relu), outputs=_backward_outputs,
        cost=Flops("4 N K M", _flops(4)), bound=_backward_bound)


KERNELS = (
    _forward("linear_forward", "Linear forward, y = x @ W.T + b", False, forward_numpy),
    _forward("linear_relu_forward", "Linear + ReLU forward, y = relu(x @ W.T + b)", True,
             relu_forward_numpy),
    _backward("linear_backward", "Linear backward: dx, dW and db", False, backward_numpy),
    _backward("linear_relu_backward", "Linear + ReLU backward: mask, dx, dW and db", True,
              relu_backward_numpy),
)
