"""What is benchmarked: each kernel, its size ladder, inputs, and cost model.

One ``Kernel`` subclass per benchmarked operation.  It says how to build
inputs for a size, how each kind of contender calls it (the idiomatic NumPy
baseline, a fastnn backend through the public API, PyTorch's CPU functions),
which outputs to compare, and the minimum work the operation must do: bytes
moved for memory-bound kernels, floating-point operations for matrix
products.  ``python -m fastnn bench`` and the pytest-benchmark suite in
``benches/`` both read ``KERNELS`` from here, so the two never disagree.

Minimum bytes, with E = N*C*S elements of a batch-norm input, b the item
size (4 or 8) and STREAM's counting (each array read or written once counts
its size once; the read-for-ownership of written lines is not counted, as
STREAM does not count it either)::

    batchnorm forward, training   3 E b    stats pass reads x; second pass reads x, writes y
    batchnorm forward, evaluation 2 E b    reads x, writes y
    batchnorm backward, training  5 E b    Σdy, Σdy·x̂ read dy, x; dx pass reads both, writes dx
    cross-entropy loss only       N C b + 8 N        reads logits (and int64 targets)
    cross-entropy backward        2 N C b + 8 N      reads logits, writes the gradient
    cross-entropy loss + gradient 2 N C b + 8 N      reads logits, writes the gradient

Per-channel and per-class vectors are negligible and left out.  Linear
layers are compute-bound: forward is 2 N K M flops (one product), backward
4 N K M (dx = dy @ W and dW = dy.T @ x); the bias, ReLU and bias-gradient
work is not counted, so their cost shows as lost GFLOP/s.

A kernel may declare ``variants``: other ways to call fastnn, each timed as
its own row (``"out"``: batch norm writing y or dx, the fused cross-entropy
its gradient, into a reused buffer, which spares the page faults of a fresh
large output).

Size names: ``tiny``, ``small``, ``medium``, ``large`` (and ``-nchw`` for
batch norm over images).  ``tiny`` sizes measure the fixed cost of a whole
API call; ``large`` sizes stream from DRAM on this project's machine.
"""

import zlib
from dataclasses import dataclass

import numpy as np

from . import baselines

MOMENTUM = 0.1
EPS = 1e-5


@dataclass(frozen=True)
class Size:
    name: str       # "medium", "large-nchw", ...
    shape: tuple    # batch norm: x's shape; cross-entropy: (N, C); Linear: (N, K, M)
    label: str      # "4096x1024", "256x1024->1024"

    @property
    def tier(self):
        return self.name.split("-")[0]


def _bn_size(name, shape):
    return Size(name, tuple(shape), "x".join(map(str, shape)))


def _linear_size(name, N, K, M):
    return Size(name, (N, K, M), f"{N}x{K}->{M}")


BATCHNORM_SIZES = (
    _bn_size("tiny", (8, 16)),
    _bn_size("small", (256, 256)),
    _bn_size("medium", (4096, 1024)),
    _bn_size("large", (65536, 256)),
    _bn_size("tiny-nchw", (2, 8, 4, 4)),
    _bn_size("medium-nchw", (32, 64, 56, 56)),
    _bn_size("large-nchw", (64, 128, 56, 56)),
)
CROSS_ENTROPY_SIZES = (
    _bn_size("tiny", (8, 10)),
    _bn_size("small", (256, 1000)),
    _bn_size("medium", (4096, 1000)),
    _bn_size("large", (2048, 32000)),
)
LINEAR_SIZES = (
    _linear_size("tiny", 8, 16, 16),
    _linear_size("small", 64, 256, 256),
    _linear_size("medium", 256, 1024, 1024),
    _linear_size("large", 2048, 2048, 2048),
)


def _normal(rng, shape, dtype, scale=1.0, shift=0.0):
    values = rng.standard_normal(shape, dtype=dtype)
    if scale != 1.0:
        values *= dtype.type(scale)
    if shift != 0.0:
        values += dtype.type(shift)
    return values


def _tensor(torch, array):
    return torch.from_numpy(array)


class Kernel:
    """One benchmarked operation.  Subclasses fill in the class attributes and methods."""

    name = ""
    family = ""           # "batchnorm", "cross_entropy", "linear"
    title = ""
    sizes = ()
    quick = ()            # size names run by --quick
    mutable = ()          # input names a call updates in place (each contender gets copies)
    variants = ()         # extra ways to call fastnn, each its own contender row (e.g. "out")
    bytes_formula = None  # text of the minimum-bytes formula, or None (compute-bound)
    flops_formula = None

    def size(self, name):
        for size in self.sizes:
            if size.name == name:
                return size
        raise KeyError(f"{self.name}: no size named {name!r}")

    def make_inputs(self, shape, dtype, rng):
        raise NotImplementedError

    def numpy(self, inp):
        """A zero-argument callable running the idiomatic NumPy baseline."""
        raise NotImplementedError

    def fastnn(self, inp, backend, variant=None):
        """A zero-argument callable running fastnn's public API on ``backend``
        (``variant``: one of ``variants``, e.g. writing into a reused ``out=``)."""
        raise NotImplementedError

    def torch(self, torch, inp):
        """``(call, outputs)``: PyTorch's CPU version and the map of its result to outputs."""
        raise NotImplementedError

    def outputs(self, result, inp):
        """The named output arrays of a NumPy-baseline or fastnn result."""
        raise NotImplementedError

    def bound(self, inp):
        """For Linear: the bare BLAS products alone, the floor fastnn aims at; else None."""
        return None

    def min_bytes(self, shape, itemsize):
        return None

    def flops(self, shape):
        return None


# ----------------------------------------------------------------------------
# Batch normalization

def _bn_common_inputs(shape, dtype, rng):
    C = shape[1]
    return {
        "x": _normal(rng, shape, dtype, 2.0, 0.5),
        "weight": _normal(rng, (C,), dtype, 0.1, 1.0),
        "bias": _normal(rng, (C,), dtype, 0.1),
        "out": np.empty(shape, dtype),      # for the "out" variant only
    }


def _out(inp, variant):
    """The reused output buffer of the "out" variant, else None (a fresh output)."""
    return inp["out"] if variant == "out" else None


def _elements(shape):
    return int(np.prod(shape))


class BatchNormForwardTrain(Kernel):
    name = "batchnorm_forward_train"
    family = "batchnorm"
    title = "batch norm forward, training (batch statistics + running-stat update)"
    sizes = BATCHNORM_SIZES
    quick = ("tiny", "medium", "large", "medium-nchw")
    variants = ("out",)
    mutable = ("running_mean", "running_var", "out")
    bytes_formula = "3 E b"

    def make_inputs(self, shape, dtype, rng):
        inp = _bn_common_inputs(shape, dtype, rng)
        inp["running_mean"] = np.zeros(shape[1], dtype)
        inp["running_var"] = np.ones(shape[1], dtype)
        return inp

    def numpy(self, inp):
        x, w, b, rm, rv = (inp[k] for k in ("x", "weight", "bias", "running_mean", "running_var"))
        return lambda: baselines.batchnorm_forward_train(x, w, b, rm, rv, MOMENTUM, EPS)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        x, w, b, rm, rv = (inp[k] for k in ("x", "weight", "bias", "running_mean", "running_var"))
        out = _out(inp, variant)
        return lambda: fastnn.batchnorm_forward(x, w, b, rm, rv, training=True,
                                                momentum=MOMENTUM, eps=EPS, out=out,
                                                backend=backend)

    def torch(self, torch, inp):
        F = torch.nn.functional
        x, w, b, rm, rv = (_tensor(torch, inp[k]) for k in
                           ("x", "weight", "bias", "running_mean", "running_var"))

        def call():
            return F.batch_norm(x, rm, rv, w, b, training=True, momentum=MOMENTUM, eps=EPS)
        return call, lambda y: {"y": y.numpy(), "running_mean": inp["running_mean"],
                                "running_var": inp["running_var"]}

    def outputs(self, result, inp):
        y, mean, invstd = result
        return {"y": y, "mean": mean, "invstd": invstd,
                "running_mean": inp["running_mean"], "running_var": inp["running_var"]}

    def min_bytes(self, shape, itemsize):
        return 3 * _elements(shape) * itemsize


class BatchNormForwardEval(Kernel):
    name = "batchnorm_forward_eval"
    family = "batchnorm"
    title = "batch norm forward, evaluation (running statistics)"
    sizes = BATCHNORM_SIZES
    quick = ("tiny", "large")
    variants = ("out",)
    mutable = ("out",)
    bytes_formula = "2 E b"

    def make_inputs(self, shape, dtype, rng):
        inp = _bn_common_inputs(shape, dtype, rng)
        inp["running_mean"] = _normal(rng, (shape[1],), dtype, 0.1, 0.5)
        inp["running_var"] = (rng.random(shape[1]) * 3 + 0.5).astype(dtype)
        return inp

    def numpy(self, inp):
        x, w, b, rm, rv = (inp[k] for k in ("x", "weight", "bias", "running_mean", "running_var"))
        return lambda: baselines.batchnorm_forward_eval(x, w, b, rm, rv, EPS)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        x, w, b, rm, rv = (inp[k] for k in ("x", "weight", "bias", "running_mean", "running_var"))
        out = _out(inp, variant)
        return lambda: fastnn.batchnorm_forward(x, w, b, rm, rv, training=False,
                                                eps=EPS, out=out, backend=backend)

    def torch(self, torch, inp):
        F = torch.nn.functional
        x, w, b, rm, rv = (_tensor(torch, inp[k]) for k in
                           ("x", "weight", "bias", "running_mean", "running_var"))

        def call():
            return F.batch_norm(x, rm, rv, w, b, training=False, eps=EPS)
        return call, lambda y: {"y": y.numpy()}

    def outputs(self, result, inp):
        y, mean, invstd = result
        return {"y": y, "mean": mean, "invstd": invstd}

    def min_bytes(self, shape, itemsize):
        return 2 * _elements(shape) * itemsize


class BatchNormBackward(Kernel):
    name = "batchnorm_backward"
    family = "batchnorm"
    title = "batch norm backward, training (through the batch statistics)"
    sizes = BATCHNORM_SIZES
    quick = ("tiny", "medium", "large", "medium-nchw")
    variants = ("out",)
    mutable = ("out",)
    bytes_formula = "5 E b"

    def make_inputs(self, shape, dtype, rng):
        inp = _bn_common_inputs(shape, dtype, rng)
        axes = (0,) + tuple(range(2, len(shape)))
        x64 = inp["x"].astype(np.float64)
        inp["mean"] = x64.mean(axis=axes).astype(dtype)
        inp["invstd"] = (1.0 / np.sqrt(x64.var(axis=axes) + EPS)).astype(dtype)
        inp["dy"] = _normal(rng, shape, dtype)
        return inp

    def numpy(self, inp):
        dy, x, w, mean, invstd = (inp[k] for k in ("dy", "x", "weight", "mean", "invstd"))
        return lambda: baselines.batchnorm_backward_train(dy, x, w, mean, invstd)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        dy, x, w, mean, invstd = (inp[k] for k in ("dy", "x", "weight", "mean", "invstd"))
        out = _out(inp, variant)
        return lambda: fastnn.batchnorm_backward(dy, x, w, mean, invstd, training=True,
                                                 out=out, backend=backend)

    def torch(self, torch, inp):
        # Autograd through F.batch_norm: the forward graph is built once
        # here, and only the backward node runs in the timed call.
        F = torch.nn.functional
        x = _tensor(torch, inp["x"]).requires_grad_()
        w = _tensor(torch, inp["weight"]).requires_grad_()
        b = _tensor(torch, inp["bias"]).requires_grad_()
        dy = _tensor(torch, inp["dy"])
        y = F.batch_norm(x, None, None, w, b, training=True, eps=EPS)

        def call():
            return torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)
        return call, lambda r: {"dx": r[0].numpy(), "dweight": r[1].numpy(),
                                "dbias": r[2].numpy()}

    def outputs(self, result, inp):
        dx, dweight, dbias = result
        return {"dx": dx, "dweight": dweight, "dbias": dbias}

    def min_bytes(self, shape, itemsize):
        return 5 * _elements(shape) * itemsize


# ----------------------------------------------------------------------------
# Softmax cross-entropy (integer targets, mean reduction)

class _CrossEntropy(Kernel):
    family = "cross_entropy"
    sizes = CROSS_ENTROPY_SIZES

    def make_inputs(self, shape, dtype, rng):
        N, C = shape
        return {"logits": _normal(rng, shape, dtype, 2.0),
                "target": rng.integers(0, C, N, dtype=np.int64)}

    def min_bytes(self, shape, itemsize):
        N, C = shape
        return self.passes * N * C * itemsize + 8 * N


class CrossEntropy(_CrossEntropy):
    name = "cross_entropy"
    title = "softmax cross-entropy, loss only"
    quick = ("tiny", "medium", "large")
    bytes_formula = "N C b + 8 N"
    passes = 1

    def numpy(self, inp):
        logits, target = inp["logits"], inp["target"]
        return lambda: baselines.cross_entropy(logits, target)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        logits, target = inp["logits"], inp["target"]
        return lambda: fastnn.softmax_cross_entropy(logits, target, backend=backend)

    def torch(self, torch, inp):
        F = torch.nn.functional
        logits, target = _tensor(torch, inp["logits"]), _tensor(torch, inp["target"])
        return (lambda: F.cross_entropy(logits, target)), lambda r: {"loss": r.numpy()}

    def outputs(self, result, inp):
        return {"loss": np.asarray(result)}


class CrossEntropyBackward(_CrossEntropy):
    name = "cross_entropy_backward"
    title = "softmax cross-entropy, gradient only"
    quick = ("medium",)
    bytes_formula = "2 N C b + 8 N"
    passes = 2

    def numpy(self, inp):
        logits, target = inp["logits"], inp["target"]
        return lambda: baselines.cross_entropy_backward(logits, target)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        logits, target = inp["logits"], inp["target"]
        return lambda: fastnn.softmax_cross_entropy_backward(logits, target, backend=backend)

    def torch(self, torch, inp):
        F = torch.nn.functional
        logits = _tensor(torch, inp["logits"]).requires_grad_()
        loss = F.cross_entropy(logits, _tensor(torch, inp["target"]))

        def call():
            return torch.autograd.grad(loss, logits, retain_graph=True)[0]
        return call, lambda r: {"dlogits": r.numpy()}

    def outputs(self, result, inp):
        return {"dlogits": result}


class CrossEntropyWithGrad(_CrossEntropy):
    name = "cross_entropy_with_grad"
    title = ("softmax cross-entropy, loss and gradient together (fused); '+out' rows write "
             "the gradient into a reused out= buffer")
    quick = ("tiny", "medium", "large")
    bytes_formula = "2 N C b + 8 N"
    passes = 2
    # A fresh N x C gradient costs page faults on every call (glibc returns
    # large blocks to the OS); a reused out= buffer avoids them.  NumPy and
    # PyTorch rows allocate, as their users do.
    variants = ("out",)
    mutable = ("out",)

    def make_inputs(self, shape, dtype, rng):
        inp = super().make_inputs(shape, dtype, rng)
        inp["out"] = np.empty(shape, dtype)
        return inp

    def numpy(self, inp):
        logits, target = inp["logits"], inp["target"]
        return lambda: baselines.cross_entropy_with_grad(logits, target)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        logits, target = inp["logits"], inp["target"]
        out = inp["out"] if variant == "out" else None
        return lambda: fastnn.softmax_cross_entropy_with_grad(logits, target, out=out,
                                                              backend=backend)

    def torch(self, torch, inp):
        # What a training step does: forward, then autograd's backward.
        F = torch.nn.functional
        logits = _tensor(torch, inp["logits"]).requires_grad_()
        target = _tensor(torch, inp["target"])

        def call():
            loss = F.cross_entropy(logits, target)
            return loss, torch.autograd.grad(loss, logits)[0]
        return call, lambda r: {"loss": r[0].detach().numpy(), "dlogits": r[1].numpy()}

    def outputs(self, result, inp):
        loss, dlogits = result
        return {"loss": np.asarray(loss), "dlogits": dlogits}


# ----------------------------------------------------------------------------
# Linear layers

class _Linear(Kernel):
    family = "linear"
    sizes = LINEAR_SIZES
    quick = ("tiny", "medium")
    relu = False

    def make_inputs(self, shape, dtype, rng):
        # Small multiples of powers of two: every product and sum of the
        # forward is exact in float32 and float64 whatever the summation
        # order, so all contenders agree exactly on the ReLU mask (y > 0)
        # and the backward comparisons are not disturbed by sign flips.
        N, K, M = shape
        x = (rng.integers(-4, 5, (N, K)) / 4).astype(dtype)
        weight = (rng.integers(-4, 5, (M, K)) / 8).astype(dtype)
        bias = (rng.integers(-8, 9, M) / 16).astype(dtype)
        return {"x": x, "weight": weight, "bias": bias}


class LinearForward(_Linear):
    name = "linear_forward"
    title = "Linear forward, y = x @ W.T + b"
    flops_formula = "2 N K M"

    def numpy(self, inp):
        x, w, b, relu = inp["x"], inp["weight"], inp["bias"], self.relu
        return lambda: baselines.linear_forward(x, w, b, relu)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        x, w, b = inp["x"], inp["weight"], inp["bias"]
        activation = "relu" if self.relu else None
        return lambda: fastnn.linear_forward(x, w, b, activation=activation, backend=backend)

    def torch(self, torch, inp):
        F = torch.nn.functional
        x, w, b = (_tensor(torch, inp[k]) for k in ("x", "weight", "bias"))
        if self.relu:
            call = lambda: F.relu(F.linear(x, w, b))     # noqa: E731
        else:
            call = lambda: F.linear(x, w, b)             # noqa: E731
        return call, lambda y: {"y": y.numpy()}

    def outputs(self, result, inp):
        return {"y": result}

    def bound(self, inp):
        x, w = inp["x"], inp["weight"]
        return lambda: x @ w.T

    def flops(self, shape):
        N, K, M = shape
        return 2 * N * K * M


class LinearReluForward(LinearForward):
    name = "linear_relu_forward"
    title = "Linear + ReLU forward, y = relu(x @ W.T + b)"
    relu = True


class LinearBackward(_Linear):
    name = "linear_backward"
    title = "Linear backward: dx, dW and db"
    flops_formula = "4 N K M"

    def make_inputs(self, shape, dtype, rng):
        inp = super().make_inputs(shape, dtype, rng)
        inp["y"] = baselines.linear_forward(inp["x"], inp["weight"], inp["bias"], self.relu)
        inp["dy"] = _normal(rng, inp["y"].shape, dtype)
        return inp

    def numpy(self, inp):
        dy, x, w, y, relu = inp["dy"], inp["x"], inp["weight"], inp["y"], self.relu
        return lambda: baselines.linear_backward(dy, x, w, y, relu)

    def fastnn(self, inp, backend, variant=None):
        import fastnn
        dy, x, w = inp["dy"], inp["x"], inp["weight"]
        y = inp["y"] if self.relu else None
        activation = "relu" if self.relu else None
        return lambda: fastnn.linear_backward(dy, x, w, y=y, activation=activation,
                                              has_bias=True, need_dx=True, backend=backend)

    def torch(self, torch, inp):
        # Autograd: the forward graph is built once, the timed call runs the
        # backward nodes only (ReLU mask, then the two products and the sum).
        F = torch.nn.functional
        x, w, b = (_tensor(torch, inp[k]).requires_grad_() for k in ("x", "weight", "bias"))
        y = F.linear(x, w, b)
        if self.relu:
            y = F.relu(y)
        dy = _tensor(torch, inp["dy"])

        def call():
            return torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)
        return call, lambda r: {"dx": r[0].numpy(), "dweight": r[1].numpy(),
                                "dbias": r[2].numpy()}

    def outputs(self, result, inp):
        dx, dweight, dbias = result
        return {"dx": dx, "dweight": dweight, "dbias": dbias}

    def bound(self, inp):
        dy, x, w = inp["dy"], inp["x"], inp["weight"]
        return lambda: (dy @ w, dy.T @ x)

    def flops(self, shape):
        N, K, M = shape
        return 4 * N * K * M


class LinearReluBackward(LinearBackward):
    name = "linear_relu_backward"
    title = "Linear + ReLU backward: mask, dx, dW and db"
    relu = True


KERNELS = {kernel.name: kernel for kernel in (
    BatchNormForwardTrain(), BatchNormForwardEval(), BatchNormBackward(),
    CrossEntropy(), CrossEntropyBackward(), CrossEntropyWithGrad(),
    LinearForward(), LinearReluForward(), LinearBackward(), LinearReluBackward(),
)}
FAMILIES = ("batchnorm", "cross_entropy", "linear")


def case_inputs(kernel, size, dtype):
    """The inputs of ``kernel`` at ``size`` in ``dtype``: the same in every run and process."""
    dtype = np.dtype(dtype)
    seed = zlib.crc32(f"{kernel.name}/{size.name}/{dtype.name}".encode())
    return kernel.make_inputs(size.shape, dtype, np.random.default_rng(seed))


def reference_outputs(kernel, inputs):
    """The float64 NumPy-baseline outputs for ``inputs`` (which it does not change)."""
    inp64 = {name: value.astype(np.float64) if value.dtype.kind == "f" else value
             for name, value in inputs.items()}
    return kernel.outputs(kernel.numpy(inp64)(), inp64)


TOLERANCE = {np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-8}


def compare(outputs, reference, dtype):
    """Largest error over the outputs both have, each relative to the reference's scale.

    Returns ``(error, worst output name)``; the error is
    ``max|out - ref| / max(max|ref|, tiny)`` per output.  A missing or
    misshapen output counts as an infinite error.
    """
    worst, worst_name = 0.0, None
    for name, value in outputs.items():
        if name not in reference:
            continue
        ref = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(value)
        if got.shape != ref.shape:
            return float("inf"), f"{name}: shape {got.shape}, expected {ref.shape}"
        if got.size == 0:
            continue
        if not np.all(np.isfinite(got)):
            return float("inf"), f"{name}: not finite"
        scale = max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny)
        error = float(np.max(np.abs(got.astype(np.float64) - ref))) / scale
        if error > worst or worst_name is None:
            worst, worst_name = error, name
    return worst, worst_name


def within_tolerance(error, dtype):
    return error <= TOLERANCE[np.dtype(dtype)]
