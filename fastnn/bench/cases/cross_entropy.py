"""Softmax cross-entropy entries: loss only, gradient only, loss and gradient fused.

``logits`` ``(N, C)``, integer ``target`` ``(N,)``, mean reduction; the
gradient is ``(softmax(logits) - onehot(target)) / N``.  The NumPy
baselines below are what a user writes without fastnn (a stable log-softmax
with ``np.exp``; the fused one shares its softmax by hand).

Minimum bytes, b bytes per element (the int64 targets count 8 N)::

    loss only           N C b + 8 N     reads the logits
    gradient only       2 N C b + 8 N   reads the logits, writes the gradient
    loss + gradient     2 N C b + 8 N   reads the logits, writes the gradient

The fused kernel's ``out`` variant writes the gradient into a reused buffer:
a fresh N x C gradient costs page faults on every call (glibc returns large
blocks to the OS); NumPy and PyTorch allocate, as their users do.
"""

import numpy as np

from ._kernel import Kernel, MinBytes, normal, shape_size

SIZES = (
    shape_size("tiny", (8, 10)),
    shape_size("small", (256, 1000)),
    shape_size("medium", (4096, 1000)),
    shape_size("large", (2048, 32000)),
)
# The test run's check: 512000 elements, above the 2**15 from which the
# numba kernels run rows in parallel.
CHECK = shape_size("check", (512, 1000))


# ----------------------------------------------------------------------------
# The idiomatic NumPy baselines

def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def loss_numpy(logits, target):
    logp = _log_softmax(logits)
    return -logp[np.arange(len(target)), target].mean()


def gradient_numpy(logits, target):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    grad = exp / exp.sum(axis=1, keepdims=True)
    grad[np.arange(len(target)), target] -= 1.0
    grad /= len(target)
    return grad


def loss_and_gradient_numpy(logits, target):
    """Loss and gradient sharing one softmax, as a user would fuse them by hand."""
    rows = np.arange(len(target))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = (np.log(total[:, 0]) - shifted[rows, target]).mean()
    grad = exp / total
    grad[rows, target] -= 1.0
    grad /= len(target)
    return loss, grad


# ----------------------------------------------------------------------------
# Inputs, fastnn and PyTorch calls

def _inputs(shape, dtype, rng):
    N, C = shape
    return {"logits": normal(rng, shape, dtype, 2.0),
            "target": rng.integers(0, C, N, dtype=np.int64)}


def _inputs_with_out(shape, dtype, rng):
    inputs = _inputs(shape, dtype, rng)
    inputs["out"] = np.empty(shape, dtype)      # for the "out" variant only
    return inputs


def _loss_fastnn(inputs, backend, out):
    import fastnn
    logits, target = inputs["logits"], inputs["target"]
    return lambda: fastnn.softmax_cross_entropy(logits, target, backend=backend)


def _loss_torch(torch, inputs):
    F = torch.nn.functional
    logits, target = torch.from_numpy(inputs["logits"]), torch.from_numpy(inputs["target"])
    return (lambda: F.cross_entropy(logits, target)), lambda r: {"loss": r.numpy()}


def _gradient_fastnn(inputs, backend, out):
    import fastnn
    logits, target = inputs["logits"], inputs["target"]
    return lambda: fastnn.softmax_cross_entropy_backward(logits, target, backend=backend)


def _gradient_torch(torch, inputs):
    F = torch.nn.functional
    logits = torch.from_numpy(inputs["logits"]).requires_grad_()
    loss = F.cross_entropy(logits, torch.from_numpy(inputs["target"]))

    def call():
        return torch.autograd.grad(loss, logits, retain_graph=True)[0]
    return call, lambda r: {"dlogits": r.numpy()}


def _fused_fastnn(inputs, backend, out):
    import fastnn
    logits, target = inputs["logits"], inputs["target"]
    return lambda: fastnn.softmax_cross_entropy_with_grad(logits, target, out=out,
                                                          backend=backend)


def _fused_torch(torch, inputs):
    # What a training step does: forward, then autograd's backward.
    F = torch.nn.functional
    logits = torch.from_numpy(inputs["logits"]).requires_grad_()
    target = torch.from_numpy(inputs["target"])

    def call():
        loss = F.cross_entropy(logits, target)
        return loss, torch.autograd.grad(loss, logits)[0]
    return call, lambda r: {"loss": r[0].detach().numpy(), "dlogits": r[1].numpy()}


def _cost(passes):
    def count(shape, itemsize):
        N, C = shape
        return passes * N * C * itemsize + 8 * N
    return count


KERNELS = (
    Kernel(
        name="cross_entropy", family="cross_entropy", api="softmax_cross_entropy",
        title="softmax cross-entropy, loss only",
        sizes=SIZES, quick=("tiny", "medium", "large"), check_size=CHECK,
        inputs=_inputs, numpy=loss_numpy, fastnn=_loss_fastnn, torch=_loss_torch,
        outputs=lambda result, inputs: {"loss": np.asarray(result)},
        cost=MinBytes("N C b + 8 N", _cost(1))),
    Kernel(
        name="cross_entropy_backward", family="cross_entropy",
        api="softmax_cross_entropy_backward",
        title="softmax cross-entropy, gradient only",
        sizes=SIZES, quick=("medium",), check_size=CHECK,
        inputs=_inputs, numpy=gradient_numpy, fastnn=_gradient_fastnn, torch=_gradient_torch,
        outputs=lambda result, inputs: {"dlogits": result},
        cost=MinBytes("2 N C b + 8 N", _cost(2))),
    Kernel(
        name="cross_entropy_with_grad", family="cross_entropy",
        api="softmax_cross_entropy_with_grad",
        title=("softmax cross-entropy, loss and gradient together (fused); '+out' rows write "
               "the gradient into a reused out= buffer"),
        sizes=SIZES, quick=("tiny", "medium", "large"), check_size=CHECK,
        inputs=_inputs_with_out, numpy=loss_and_gradient_numpy, fastnn=_fused_fastnn,
        torch=_fused_torch,
        outputs=lambda result, inputs: {"loss": np.asarray(result[0]), "dlogits": result[1]},
        cost=MinBytes("2 N C b + 8 N", _cost(2)), mutable=("out",), variants=("out",)),
)
