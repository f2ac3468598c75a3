"""One entry per public function: what the generic tests in ``test_ops.py`` need.

Modelled on PyTorch's OpInfo: an entry names the function, builds its sample
inputs for a dtype (deterministic: a fixed seed per entry), calls the float64
oracle, says which arguments the call may change in place, and lists bad
inputs with the error and the argument name the message must begin with.
Its ``term_scales`` give, per output, the size of the terms the output is
summed from: the comparison's atol is relative to that where the terms
cancel (batch-norm dx, a softmax gradient at the target, a matrix product),
so float rounding passes and a wrong formula does not.
Adding a public function to fastnn is adding an entry here.

Sizes: every entry has small odd shapes (vector-loop remainders) and one case
marked ``large`` above 2**15 elements, the size from which the numba backend
switches to its parallel kernels (``PARALLEL_MIN_ELEMENTS``).
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastnn

from . import oracle
from .support import float64_kwargs


@dataclass
class Sample:
    desc: str
    kwargs: dict
    large: bool = False


@dataclass
class ErrorCase:
    desc: str
    kwargs: dict
    error: type
    arguments: tuple      # names the message may begin with (usually one)

    @property
    def match(self):
        return r"^(" + "|".join(self.arguments) + r")\b"


@dataclass
class OpInfo:
    name: str
    make_samples: Callable          # dtype -> [Sample]
    make_errors: Callable           # () -> [ErrorCase]
    mutable: Callable = field(default=lambda kwargs: ())   # kwargs -> names changed in place
    # float64 kwargs -> the size of the terms each output sums (None: max |output|);
    # where terms cancel, rounding errors are relative to them, not to the result.
    term_scales: Callable = field(default=lambda kwargs: None)
    out_index: int = 0              # the result's element that ``out=`` receives
                                    # (None: the result itself)

    @property
    def function(self):
        return getattr(fastnn, self.name)

    @property
    def reference(self):
        return getattr(oracle, self.name)

    def samples(self, dtype):
        return self.make_samples(np.dtype(dtype))

    def scales(self, kwargs):
        return self.term_scales(_oracle_kwargs(kwargs))

    def call_reference(self, kwargs):
        """The oracle on float64 copies; returns (result, the copies it was given)."""
        ref_kwargs = _oracle_kwargs(kwargs)
        return self.reference(**ref_kwargs), ref_kwargs


def _oracle_kwargs(kwargs):
    """float64 copies of a call's arguments, less ``out`` (the oracle has none)."""
    ref_kwargs = float64_kwargs(kwargs)
    ref_kwargs.pop("out", None)
    return ref_kwargs


class _Maker:
    """Random arrays of one dtype from one seeded generator."""

    def __init__(self, dtype, seed):
        self.dtype, self.rng = dtype, np.random.default_rng(seed)

    def normal(self, *shape, scale=1.0):
        return (scale * self.rng.standard_normal(shape)).astype(self.dtype)

    def uniform(self, low, high, *shape):
        return self.rng.uniform(low, high, shape).astype(self.dtype)

    def labels(self, n, c):
        return self.rng.integers(0, c, n).astype(np.int64)

    def probabilities(self, n, c):
        return self.rng.dirichlet(np.ones(c), n).astype(self.dtype)


def _bad(base, desc, error, arguments, **changes):
    kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in base.items()}
    kwargs.update(changes)
    if isinstance(arguments, str):
        arguments = (arguments,)
    return ErrorCase(desc, kwargs, error, arguments)


# ---------------------------------------------------------------- batch norm

def _bn_x(m, shape):
    """Channels with their own offset and spread, as real activations have."""
    c = shape[1]
    channel = (1, c) + (1,) * (len(shape) - 2)
    offset = m.rng.uniform(-3, 3, c).reshape(channel)
    spread = m.rng.uniform(0.5, 3, c).reshape(channel)
    return (offset + spread * m.rng.standard_normal(shape)).astype(m.dtype)


def batchnorm_forward_samples(dtype):
    m = _Maker(dtype, 101)
    samples = []

    def add(desc, shape, affine=True, running=True, large=False, **options):
        c = shape[1]
        kwargs = dict(x=_bn_x(m, shape))
        if affine in (True, "weight"):
            kwargs.update(weight=m.normal(c))
        if affine in (True, "bias"):
            kwargs.update(bias=m.normal(c))
        if running:
            kwargs.update(running_mean=m.normal(c), running_var=m.uniform(0.5, 2, c))
        kwargs.update(options)
        samples.append(Sample(desc, kwargs, large))

    add("NC", (16, 5))
    add("NC-no-affine-no-running", (16, 5), affine=False, running=False)
    add("NC-weight-only", (16, 5), affine="weight")
    add("NC-bias-only", (16, 5), affine="bias", running=False)
    add("NCHW-weight-only", (4, 3, 5, 6), affine="weight")
    add("NCHW-bias-only", (4, 3, 5, 6), affine="bias")
    add("eval-NC-weight-only", (16, 5), affine="weight", training=False)
    add("eval-NC-bias-only", (16, 5), affine="bias", training=False)
    add("NC-affine-no-running", (6, 7), running=False)
    add("NCHW", (4, 3, 5, 6), momentum=0.3, eps=1e-3)
    add("NCL", (3, 4, 7))
    add("NCDHW", (2, 3, 2, 2, 3))
    add("NCHW-two-values-per-channel", (2, 3, 1, 1))
    add("NC-one-channel", (9, 1))
    add("NC-momentum-0", (8, 4), momentum=0.0)
    add("NC-momentum-1", (8, 4), momentum=1.0)
    add("NC-eps-0", (8, 4), eps=0.0)
    add("NC-wide", (24, 301))
    add("eval-NC", (16, 5), training=False)
    add("eval-NCHW-no-affine", (4, 3, 5, 6), affine=False, training=False)
    add("eval-NCL", (3, 4, 7), training=False, eps=0.1)
    # Large: above the parallel threshold and more than one 65536-element
    # tile, so the numba kernels split the work (test_threads.py checks).
    add("large-NC", (512, 160), large=True)
    add("large-NCHW", (16, 16, 18, 18), large=True)
    add("large-eval-NCHW", (16, 16, 18, 18), training=False, large=True)
    add("large-eval-NC-no-affine", (512, 160), affine=False, training=False, large=True)
    samples = _with_out(samples, "x")
    samples.append(Sample("large-eval-NC-out", dict(samples[-1].kwargs, training=False),
                          large=True))
    # Zero-stride inputs (np.broadcast_to): read-only views whose elements repeat.
    samples.append(Sample("NCL-broadcast-inputs", dict(
        x=np.broadcast_to(_bn_x(m, (1, 3, 7)), (4, 3, 7)),
        weight=np.broadcast_to(dtype.type(1.5), (3,)), bias=m.normal(3))))
    samples.append(Sample("eval-NC-broadcast-inputs", dict(
        x=np.broadcast_to(_bn_x(m, (1, 5)), (6, 5)), running_mean=m.normal(5),
        running_var=np.broadcast_to(dtype.type(2.0), (5,)), training=False)))
    return samples


def _with_out(samples, like):
    """The samples plus copies of a few (one large) that pass a preallocated
    ``out`` of the shape of argument ``like``, filled with nan."""
    for sample in list(samples[:3]) + [s for s in samples if s.large][:1]:
        kwargs = dict(sample.kwargs, out=np.full_like(sample.kwargs[like], np.nan))
        samples.append(Sample(sample.desc + "-out", kwargs, sample.large))
    return samples


def _out_errors(base, like):
    """Bad ``out`` arrays for a kernel whose output has the shape of ``like``."""
    shape, dtype = base[like].shape, base[like].dtype
    readonly = np.zeros(shape, dtype)
    readonly.flags.writeable = False
    overlapping = base[like].copy()
    wider = (shape[0], shape[1] + 1) + shape[2:]
    return [
        _bad(base, "out-shape", ValueError, "out", out=np.zeros(wider, dtype)),
        _bad(base, "out-float64", TypeError, "out", out=np.zeros(shape)),
        _bad(base, "out-int", TypeError, "out", out=np.zeros(shape, np.int32)),
        _bad(base, "out-list", TypeError, "out", out=np.zeros(shape, dtype).tolist()),
        _bad(base, "out-readonly", ValueError, "out", out=readonly),
        _bad(base, f"out-is-{like}", ValueError, "out", **{like: overlapping},
             out=overlapping),
    ]


def _sharing(base, writer, like, other):
    """``base`` with argument ``writer`` (shaped and typed as array ``like``)
    and argument ``other`` placed in one buffer so that they partly overlap."""
    kwargs = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in base.items()}
    source = np.asarray(base[other])
    raw = np.zeros(like.nbytes + source.nbytes + 8, np.uint8)
    start = max(0, (like.nbytes - source.nbytes // 2) // 8 * 8)
    kwargs[writer] = raw[:like.nbytes].view(like.dtype).reshape(like.shape)
    shared = raw[start:start + source.nbytes].view(source.dtype).reshape(source.shape)
    shared[...] = source
    kwargs[other] = shared
    return kwargs


def _overlap_errors(base, writer, like, others):
    """One case per argument in ``others`` that the written argument ``writer``
    partly overlaps; the message begins with one of the two names (and the
    generic test checks that it names both)."""
    return [ErrorCase(f"{writer}-overlaps-{other}", _sharing(base, writer, like, other),
                      ValueError, (writer, other)) for other in others]


def _self_overlapping(like):
    """A writeable array of ``like``'s shape whose rows are one row of memory."""
    row = np.zeros(like.shape[-1], like.dtype)
    return np.lib.stride_tricks.as_strided(row, like.shape,
                                           (0,) * (like.ndim - 1) + row.strides)


def batchnorm_forward_errors():
    m = _Maker(np.dtype(np.float32), 102)
    base = dict(x=m.normal(6, 3), weight=m.normal(3), bias=m.normal(3),
                running_mean=m.normal(3), running_var=m.uniform(0.5, 2, 3))
    f32 = np.float32
    return [
        _bad(base, "x-1d", ValueError, "x", x=m.normal(6)),
        _bad(base, "x-0d", ValueError, "x", x=np.array(1.0, f32)),
        _bad(base, "x-int", TypeError, "x", x=np.ones((6, 3), np.int64)),
        _bad(base, "x-bool", TypeError, "x", x=np.ones((6, 3), bool)),
        _bad(base, "x-complex", TypeError, "x", x=np.ones((6, 3), np.complex64)),
        _bad(base, "weight-length", ValueError, "weight", weight=m.normal(4)),
        _bad(base, "weight-2d", ValueError, "weight", weight=m.normal(3, 1)),
        _bad(base, "bias-length", ValueError, "bias", bias=m.normal(2)),
        _bad(base, "weight-float64", TypeError, "weight", weight=np.ones(3)),
        _bad(base, "bias-int", TypeError, "bias", bias=np.ones(3, np.int32)),
        _bad(base, "running_mean-length", ValueError, "running_mean", running_mean=m.normal(4)),
        _bad(base, "running_var-float64", TypeError, "running_var", running_var=np.ones(3)),
        _bad(base, "running_var-int", TypeError, "running_var", running_var=np.ones(3, np.int64)),
        _bad(base, "eps-negative", ValueError, "eps", eps=-1e-5),
        _bad(base, "momentum-negative", ValueError, "momentum", momentum=-0.1),
        _bad(base, "momentum-above-1", ValueError, "momentum", momentum=1.5),
        _bad(base, "eval-without-running-stats", ValueError, ("running_mean", "running_var"),
             training=False, running_mean=None, running_var=None),
        _bad(base, "eval-without-running_var", ValueError, "running_var",
             training=False, running_var=None),
        _bad(base, "training-one-value-per-channel-NC", ValueError, "x", x=m.normal(1, 3)),
        _bad(base, "training-one-value-per-channel-NCHW", ValueError, "x", x=m.normal(1, 3, 1, 1)),
        _bad(base, "x-empty-batch", ValueError, "x", x=np.zeros((0, 3), f32)),
        _bad(base, "x-empty-channels", ValueError, "x", x=np.zeros((6, 0), f32),
             weight=None, bias=None, running_mean=None, running_var=None),
        _bad(base, "x-empty-spatial", ValueError, "x", x=np.zeros((6, 3, 0), f32)),
        _bad(base, "training-int", TypeError, "training", training=1),
        _bad(base, "training-none", TypeError, "training", training=None),
        _bad(base, "momentum-nan", ValueError, "momentum", momentum=float("nan")),
        _bad(base, "momentum-string", TypeError, "momentum", momentum="0.1"),
        _bad(base, "eps-nan", ValueError, "eps", eps=float("nan")),
        _bad(base, "running_mean-readonly-in-training", ValueError, "running_mean",
             running_mean=_readonly(base["running_mean"])),
        _bad(base, "running_var-list-in-training", TypeError, "running_var",
             running_var=[1.0, 1.0, 1.0]),
        _bad(base, "running_var-broadcast-in-training", ValueError, "running_var",
             running_var=np.broadcast_to(np.float32(1), (3,))),
        _bad(base, "running_mean-is-running_var", ValueError, ("running_mean", "running_var"),
             running_mean=base["running_var"], running_var=base["running_var"]),
        _bad(base, "running_var-is-weight", ValueError, "running_var",
             running_var=base["weight"], weight=base["weight"]),
        _bad(base, "out-broadcast", ValueError, "out",
             out=np.broadcast_to(np.float32(0), (6, 3))),
        _bad(base, "out-self-overlapping", ValueError, "out", out=_self_overlapping(base["x"])),
        _bad(base, "eval-out-readonly", ValueError, "out", training=False,
             out=_readonly(np.zeros((6, 3), f32))),
    ] + _out_errors(base, "x") + _overlap_errors(
        base, "out", base["x"], ("x", "weight", "bias", "running_mean", "running_var")) + [
        ErrorCase("eval-" + case.desc, dict(case.kwargs, training=False), case.error,
                  case.arguments)
        for case in _overlap_errors(base, "out", base["x"], ("running_mean", "running_var"))
    ] + _overlap_errors(base, "running_mean", base["running_mean"], ("x", "weight", "bias"))


def _readonly(array):
    copy = np.array(array)
    copy.flags.writeable = False
    return copy


def _bn_running_stats(kwargs):
    stats = ("running_mean", "running_var") if kwargs.get("training", True) else ()
    return stats + _out(kwargs)


def _out(kwargs):
    return ("out",) if kwargs.get("out") is not None else ()


def batchnorm_backward_samples(dtype):
    m = _Maker(dtype, 201)
    samples = []

    def add(desc, shape, affine=True, training=True, eps=1e-5, large=False):
        c = shape[1]
        x = _bn_x(m, shape)
        weight = m.normal(c) if affine else None
        if training:
            _, mean, invstd = oracle.batchnorm_forward(x, eps=eps)
        else:
            mean = m.normal(c).astype(np.float64)
            invstd = 1.0 / np.sqrt(m.uniform(0.5, 2, c).astype(np.float64) + eps)
        kwargs = dict(dy=m.normal(*shape), x=x, weight=weight, mean=mean.astype(dtype),
                      invstd=invstd.astype(dtype), training=training)
        samples.append(Sample(desc, kwargs, large))

    add("NC", (16, 5))
    add("NC-no-affine", (16, 5), affine=False)
    add("NCHW", (4, 3, 5, 6))
    add("NCL", (3, 4, 7))
    add("NCDHW", (2, 3, 2, 2, 3))
    add("NCHW-two-values-per-channel", (2, 3, 1, 1))
    add("NC-wide", (24, 301))
    add("eval-NC", (16, 5), training=False)
    add("eval-NCHW-no-affine", (4, 3, 5, 6), affine=False, training=False)
    add("large-NC", (512, 160), large=True)
    add("large-NC-no-affine", (512, 160), affine=False, large=True)
    add("large-NCHW", (16, 16, 18, 18), large=True)
    add("large-eval-NCHW", (16, 16, 18, 18), training=False, large=True)
    add("large-eval-NC-no-affine", (512, 160), affine=False, training=False, large=True)
    return _with_out(samples, "dy")


def batchnorm_backward_errors():
    m = _Maker(np.dtype(np.float32), 202)
    base = dict(dy=m.normal(6, 3), x=m.normal(6, 3), weight=m.normal(3),
                mean=m.normal(3), invstd=m.uniform(0.5, 2, 3))
    return [
        _bad(base, "dy-channels", ValueError, ("dy", "x"), dy=m.normal(6, 4)),
        _bad(base, "dy-batch", ValueError, ("dy", "x"), dy=m.normal(5, 3)),
        _bad(base, "dy-x-1d", ValueError, ("dy", "x"), dy=m.normal(6), x=m.normal(6)),
        _bad(base, "mean-length", ValueError, "mean", mean=m.normal(4)),
        _bad(base, "invstd-length", ValueError, "invstd", invstd=m.uniform(0.5, 2, 2)),
        _bad(base, "invstd-2d", ValueError, "invstd", invstd=m.uniform(0.5, 2, 3, 1)),
        _bad(base, "weight-length", ValueError, "weight", weight=m.normal(4)),
        _bad(base, "dy-int", TypeError, "dy", dy=np.ones((6, 3), np.int64)),
        _bad(base, "x-complex", TypeError, "x", x=np.ones((6, 3), np.complex128)),
        _bad(base, "mean-float64", TypeError, "mean", mean=np.zeros(3)),
        _bad(base, "invstd-int", TypeError, "invstd", invstd=np.ones(3, np.int64)),
        _bad(base, "weight-float64", TypeError, "weight", weight=np.ones(3)),
        _bad(base, "x-empty", ValueError, "x", x=np.zeros((0, 3), np.float32),
             dy=np.zeros((0, 3), np.float32)),
        _bad(base, "training-string", TypeError, "training", training="yes"),
        _bad(base, "out-broadcast", ValueError, "out",
             out=np.broadcast_to(np.float32(0), (6, 3))),
        _bad(base, "out-self-overlapping", ValueError, "out", out=_self_overlapping(base["dy"])),
    ] + _out_errors(base, "dy") + _overlap_errors(
        base, "out", base["dy"], ("dy", "x", "weight", "mean", "invstd"))


def batchnorm_forward_scales(kw):
    """A kernel may fold the affine map into y = x * s + t with s = weight * invstd
    and t = bias - mean * s: y is then the sum of terms of size |x| |s| and |t|,
    large against y when the mean is large against the spread."""
    y, mean, invstd = oracle.batchnorm_forward(**kw)
    x = np.moveaxis(kw["x"], 1, -1).reshape(-1, kw["x"].shape[1])
    s = invstd if kw.get("weight") is None else invstd * np.abs(kw["weight"])
    t = np.abs(mean) * s + (0 if kw.get("bias") is None else np.abs(kw["bias"]))
    return ((np.abs(x).max(axis=0) * s + t).max(), None, None)


def batchnorm_backward_scales(kw):
    """dx = invstd * (g - mean(g) - xhat * mean(g * xhat)) cancels to ~0 when a
    channel has few values (two values: exactly); dweight and dbias are sums of
    terms of either sign.  Each is judged against the size of its terms."""
    x, dy = kw["x"], kw["dy"]
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    xhat = (x - kw["mean"].reshape(shape)) * kw["invstd"].reshape(shape)
    g = dy if kw["weight"] is None else dy * kw["weight"].reshape(shape)
    dx_terms = np.abs(g).max() * kw["invstd"].max() * (1 + np.abs(xhat).max() ** 2)
    if kw["weight"] is None:
        return (dx_terms, None, None)
    return (dx_terms, np.abs(dy * xhat).sum(axis=axes).max(), np.abs(dy).sum(axis=axes).max())


# ------------------------------------------------------------------- softmax

def softmax_samples(dtype):
    m = _Maker(dtype, 301)
    return [
        Sample("2d-last", dict(x=m.normal(8, 10, scale=3))),
        Sample("2d-axis-1", dict(x=m.normal(8, 10, scale=3), axis=1)),
        Sample("2d-axis-0", dict(x=m.normal(8, 10, scale=3), axis=0)),
        Sample("3d-axis-1", dict(x=m.normal(3, 4, 5, scale=3), axis=1)),
        Sample("3d-last", dict(x=m.normal(3, 4, 5, scale=3), axis=-1)),
        Sample("3d-axis-0", dict(x=m.normal(3, 4, 5, scale=3), axis=0)),
        Sample("3d-axis--2", dict(x=m.normal(3, 4, 5, scale=3), axis=-2)),
        Sample("1d", dict(x=m.normal(7, scale=3), axis=0)),
        Sample("one-class", dict(x=m.normal(4, 1))),
        Sample("wide", dict(x=m.normal(4, 1000, scale=5))),
        Sample("large", dict(x=m.normal(64, 600, scale=5)), large=True),
        Sample("large-axis-0", dict(x=m.normal(600, 64, scale=5), axis=0), large=True),
    ]


def softmax_errors():
    m = _Maker(np.dtype(np.float32), 302)
    base = dict(x=m.normal(4, 5))
    return [
        _bad(base, "axis-2", ValueError, "axis", axis=2),
        _bad(base, "axis--3", ValueError, "axis", axis=-3),
        _bad(base, "x-int", TypeError, "x", x=np.ones((4, 5), np.int32)),
        _bad(base, "x-bool", TypeError, "x", x=np.ones((4, 5), bool)),
        _bad(base, "x-complex", TypeError, "x", x=np.ones((4, 5), np.complex64)),
        _bad(base, "x-empty", ValueError, "x", x=np.zeros((4, 0), np.float32)),
        _bad(base, "x-0d", ValueError, "x", x=np.array(1.0, np.float32)),
        _bad(base, "axis-float", TypeError, "axis", axis=1.0),
        _bad(base, "axis-bool", TypeError, "axis", axis=True),
        _bad(base, "axis-none", TypeError, "axis", axis=None),
    ]


# ------------------------------------------------------------ cross-entropy

def ce_cases(dtype):
    """(desc, logits, target, options, large) shared by the three CE functions."""
    m = _Maker(dtype, 401)
    cases = []

    def add(desc, n, c, target="labels", large=False, ignored=0, ignore_index=None,
            weight=False, spatial=(), **options):
        # spatial: (d1, ..., dk) of a segmentation input, logits (n, c, d1, ..., dk)
        positions = n * int(np.prod(spatial))
        logits = m.normal(positions, c, scale=3)
        if target == "labels":
            tgt = m.labels(positions, c)
            if ignored:
                tgt[m.rng.choice(positions, ignored, replace=False)] = (
                    -100 if ignore_index is None else ignore_index)
        elif target == "int32":
            tgt = m.labels(positions, c).astype(np.int32)
        elif target == "onehot":
            tgt = np.eye(c, dtype=dtype)[m.labels(positions, c)]
        else:
            tgt = m.probabilities(positions, c)
        if spatial:
            logits = np.moveaxis(logits.reshape((n,) + spatial + (c,)), -1, 1).copy()
            if tgt.ndim == 2:
                tgt = np.moveaxis(tgt.reshape((n,) + spatial + (c,)), -1, 1).copy()
            else:
                tgt = tgt.reshape((n,) + spatial)
        if ignore_index is not None:
            options["ignore_index"] = ignore_index
        if weight:
            options["weight"] = m.uniform(0.2, 2, c)
        cases.append((desc, logits, tgt, options, large))

    add("labels-mean", 16, 7)
    add("labels-sum", 16, 7, reduction="sum")
    add("labels-none", 16, 7, reduction="none")
    add("weight-mean", 16, 7, weight=True)
    add("weight-sum", 16, 7, weight=True, reduction="sum")
    add("ignored-mean", 16, 7, ignored=4)
    add("weight-ignored-mean", 16, 7, weight=True, ignored=4)
    add("ignore-valid-class-none", 16, 7, ignored=5, ignore_index=2, reduction="none")
    add("ignore-minus-1-weight-sum", 16, 7, ignored=3, ignore_index=-1, weight=True,
        reduction="sum")
    add("smoothing-mean", 16, 7, label_smoothing=0.2)
    add("smoothing-weight-ignored-mean", 16, 7, weight=True, ignored=3, label_smoothing=0.15)
    add("smoothing-weight-none", 16, 7, weight=True, label_smoothing=0.3, reduction="none")
    add("smoothing-1-sum", 16, 7, label_smoothing=1.0, reduction="sum")
    add("probs-mean", 16, 7, target="probs")
    add("probs-sum", 16, 7, target="probs", reduction="sum")
    add("probs-weight-none", 16, 7, target="probs", weight=True, reduction="none")
    add("probs-smoothing-mean", 16, 7, target="probs", label_smoothing=0.25)
    add("onehot-weight-smoothing-sum", 16, 7, target="onehot", weight=True,
        label_smoothing=0.1, reduction="sum")
    add("labels-int32-mean", 16, 7, target="int32")
    add("one-class", 5, 1)
    add("one-sample-weight-smoothing", 1, 5, weight=True, label_smoothing=0.1)
    add("wide-smoothing", 4, 1000, label_smoothing=0.1)
    add("spatial-labels-mean", 3, 5, spatial=(4,))
    add("spatial-2d-weight-ignored-none", 2, 6, spatial=(3, 4), weight=True, ignored=5,
        reduction="none")
    add("spatial-smoothing-sum", 2, 4, spatial=(2, 3), label_smoothing=0.2, reduction="sum")
    add("spatial-probs-mean", 2, 5, spatial=(3, 2), target="probs")
    add("spatial-probs-weight-none", 2, 3, spatial=(5,), target="probs", weight=True,
        reduction="none")
    add("large-spatial-weight-mean", 4, 40, spatial=(16, 16), weight=True, ignored=30,
        large=True)
    add("large-weight-ignored-smoothing-mean", 128, 300, weight=True, ignored=9,
        label_smoothing=0.1, large=True)
    add("large-probs-none", 128, 300, target="probs", reduction="none", large=True)
    return cases


def softmax_cross_entropy_samples(dtype):
    return [Sample(desc, dict(logits=logits, target=target, **options), large)
            for desc, logits, target, options, large in ce_cases(dtype)]


def softmax_cross_entropy_backward_samples(dtype):
    m = _Maker(dtype, 402)
    samples = []
    for desc, logits, target, options, large in ce_cases(dtype):
        if options.get("reduction", "mean") == "none":
            grad_loss = m.uniform(-1, 2, *(logits.shape[:1] + logits.shape[2:]))
        else:
            grad_loss = 0.75      # not 1, so that ignoring it is caught
        kwargs = dict(logits=logits, target=target, grad_loss=grad_loss, **options)
        samples.append(Sample(desc, kwargs, large))
    return samples


def softmax_cross_entropy_with_grad_samples(dtype):
    samples = [Sample(desc, dict(logits=logits, target=target, **options), large)
               for desc, logits, target, options, large in ce_cases(dtype)]
    # A preallocated gradient buffer (out=logits itself: test_cross_entropy.py).
    for sample in list(samples[:3]) + [s for s in samples if s.large][:1]:
        kwargs = dict(sample.kwargs, out=np.full_like(sample.kwargs["logits"], np.nan))
        samples.append(Sample(sample.desc + "-out", kwargs, sample.large))
    return samples


def _with(array, index, value):
    changed = array.copy()
    changed[index] = value
    return changed


def _ce_errors(extra=()):
    f32 = np.float32
    m = _Maker(np.dtype(np.float32), 403)
    base = dict(logits=m.normal(6, 4), target=m.labels(6, 4), weight=m.uniform(0.5, 2, 4))
    labels = base["target"]
    errors = [
        _bad(base, "logits-1d", ValueError, "logits", logits=m.normal(6)),
        _bad(base, "logits-3d-target-1d", ValueError, "target", logits=m.normal(6, 4, 1)),
        _bad(base, "logits-int", TypeError, "logits", logits=np.ones((6, 4), np.int64)),
        _bad(base, "logits-bool", TypeError, "logits", logits=np.ones((6, 4), bool)),
        _bad(base, "target-length", ValueError, "target", target=labels[:5]),
        _bad(base, "target-2d-int", (TypeError, ValueError), "target",
             target=np.zeros((6, 4), np.int64)),
        _bad(base, "target-label-C", ValueError, "target", target=_with(labels, 2, 4)),
        _bad(base, "target-label-negative", ValueError, "target", target=_with(labels, 5, -1)),
        _bad(base, "target-label-huge", ValueError, "target", target=np.full(6, 2**40)),
        _bad(base, "target-label-ignore-index-other", ValueError, "target",
             target=np.full(6, -100), ignore_index=-1),
        _bad(base, "target-float-1d", TypeError, "target", target=labels.astype(np.float32)),
        _bad(base, "target-bool", TypeError, "target", target=np.ones(6, bool)),
        _bad(base, "target-probs-classes", ValueError, "target", target=m.probabilities(6, 5)),
        _bad(base, "target-probs-batch", ValueError, "target", target=m.probabilities(5, 4)),
        _bad(base, "target-probs-float64", TypeError, "target",
             target=m.probabilities(6, 4).astype(np.float64)),
        _bad(base, "target-3d", (TypeError, ValueError), "target",
             target=np.zeros((6, 4, 1), np.float32)),
        _bad(base, "weight-length", ValueError, "weight", weight=m.uniform(0.5, 2, 5)),
        _bad(base, "weight-2d", ValueError, "weight", weight=m.uniform(0.5, 2, 4, 1)),
        _bad(base, "weight-float64", TypeError, "weight", weight=np.ones(4)),
        _bad(base, "weight-int", TypeError, "weight", weight=np.ones(4, np.int64)),
        _bad(base, "reduction-unknown", ValueError, "reduction", reduction="avg"),
        _bad(base, "label_smoothing-negative", ValueError, "label_smoothing",
             label_smoothing=-0.1),
        _bad(base, "label_smoothing-above-1", ValueError, "label_smoothing",
             label_smoothing=1.5),
        _bad(base, "label_smoothing-nan", ValueError, "label_smoothing",
             label_smoothing=float("nan")),
        _bad(base, "logits-empty-batch", ValueError, "logits", logits=np.zeros((0, 4), f32),
             target=labels[:0]),
        _bad(base, "logits-empty-classes", ValueError, "logits", logits=np.zeros((6, 0), f32),
             weight=None),
        _bad(base, "ignore_index-float", TypeError, "ignore_index", ignore_index=-100.0),
        _bad(base, "ignore_index-bool", TypeError, "ignore_index", ignore_index=False),
        _bad(base, "ignore_index-huge", ValueError, "ignore_index", ignore_index=2**70),
        _bad(base, "reduction-none-object", ValueError, "reduction", reduction=None),
        _bad(base, "spatial-target-shape", ValueError, "target", logits=m.normal(6, 4, 3),
             target=np.zeros((6, 2), np.int64)),
        _bad(base, "spatial-probabilities-shape", ValueError, "target",
             logits=m.normal(6, 4, 3), target=np.full((6, 3, 4), 0.25, f32)),
    ]
    return errors + [_bad(base, *case[:3], **case[3]) for case in extra]


def softmax_cross_entropy_errors():
    return _ce_errors()


def softmax_cross_entropy_backward_errors():
    f32 = np.float32
    return _ce_errors([
        ("grad_loss-array-for-mean", ValueError, "grad_loss", dict(grad_loss=np.ones(6, f32))),
        ("grad_loss-length-for-none", ValueError, "grad_loss",
         dict(grad_loss=np.ones(5, f32), reduction="none")),
        ("grad_loss-2d-for-none", ValueError, "grad_loss",
         dict(grad_loss=np.ones((6, 1), f32), reduction="none")),
        ("grad_loss-float64-for-none", TypeError, "grad_loss",
         dict(grad_loss=np.ones(6), reduction="none")),
        ("grad_loss-int-for-none", TypeError, "grad_loss",
         dict(grad_loss=np.ones(6, np.int64), reduction="none")),
        ("grad_loss-nan", ValueError, "grad_loss", dict(grad_loss=float("nan"))),
        ("grad_loss-nan-for-none", ValueError, "grad_loss",
         dict(grad_loss=float("nan"), reduction="none")),
        ("grad_loss-string", TypeError, "grad_loss", dict(grad_loss="1")),
        ("spatial-grad_loss-shape-for-none", ValueError, "grad_loss",
         dict(logits=np.zeros((6, 4, 3), f32), target=np.zeros((6, 3), np.int64),
              grad_loss=np.ones(6, f32), reduction="none")),
    ])


def _ce_base():
    m = _Maker(np.dtype(np.float32), 403)
    return dict(logits=m.normal(6, 4), target=m.labels(6, 4), weight=m.uniform(0.5, 2, 4))


def softmax_cross_entropy_with_grad_errors():
    f32 = np.float32
    readonly = np.zeros((6, 4), f32)
    readonly.flags.writeable = False
    return _ce_errors([
        ("out-shape", ValueError, "out", dict(out=np.zeros((6, 5), f32))),
        ("out-transposed", ValueError, "out", dict(out=np.zeros((4, 6), f32))),
        ("out-float64", TypeError, "out", dict(out=np.zeros((6, 4)))),
        ("out-int", TypeError, "out", dict(out=np.zeros((6, 4), np.int32))),
        ("out-readonly", ValueError, "out", dict(out=readonly)),
        ("out-broadcast", ValueError, "out",
         dict(out=np.broadcast_to(np.float32(0), (6, 4)))),
        ("out-self-overlapping", ValueError, "out",
         dict(out=_self_overlapping(np.zeros((6, 4), f32)))),
        ("out-spatial-shape", ValueError, "out",
         dict(logits=np.zeros((6, 4, 3), f32), target=np.zeros((6, 3), np.int64),
              out=np.zeros((6, 3, 4), f32))),
    ]) + _overlap_errors(_ce_base(), "out", _ce_base()["logits"], ("logits", "target", "weight")) + [
        ErrorCase("out-overlaps-probabilities", _sharing(
            dict(_ce_base(), target=_Maker(np.dtype(f32), 404).probabilities(6, 4)),
            "out", _ce_base()["logits"], "target"), ValueError, ("out", "target")),
    ]


def _ce_term_scales(kw):
    """(loss, gradient) term sizes.  loss_i = -sum_c q[i,c] (z[i,c] - lse_i) may be
    formed as lse_i - z[i,y] (terms |z| + |lse|); dlogits = p Q - q cancels
    to 0 where the target matches the softmax (terms p Q + q)."""
    logits, target = oracle._positions(kw["logits"], kw["target"])
    q, divisor = oracle._target_weights(logits, target, kw.get("weight"),
                                        kw.get("ignore_index", -100),
                                        kw.get("label_smoothing", 0.0))
    divisor = divisor or 1.0          # nothing counted: q = 0, and 0 is exact
    finite = np.isfinite(logits)
    z_size = np.abs(np.where(finite, logits, 0.0))
    row_max = np.where(finite, logits, -np.inf).max(axis=1, keepdims=True)
    lse = row_max + np.log(np.exp(np.where(finite, logits - row_max, -np.inf)).sum(
        axis=1, keepdims=True))
    loss_rows = (q * (z_size + np.abs(lse))).sum(axis=1)
    grad_terms = oracle.softmax(logits, axis=1) * q.sum(axis=1, keepdims=True) + q
    reduction = kw.get("reduction", "mean")
    grad_loss = kw.get("grad_loss", 1.0)
    if reduction == "none":
        factor = np.abs(np.broadcast_to(np.asarray(grad_loss, float),
                                        oracle._position_shape(kw["logits"])).reshape(-1))
        return loss_rows.max(), (grad_terms * factor[:, None]).max()
    per = divisor if reduction == "mean" else 1.0
    return loss_rows.sum() / per, (grad_terms * abs(float(grad_loss)) / per).max()


def log_softmax_scales(kw):
    """x - logsumexp(x) may round at the size of the logsumexp, not the result."""
    x = kw["x"]
    result = oracle.log_softmax(x, kw.get("axis", -1))
    return (np.abs(x[np.isfinite(x)]).max(initial=0.0)
            + np.abs(result[np.isfinite(result)]).max(initial=0.0))


# -------------------------------------------------------------------- linear

def _linear_cases(dtype, seed):
    m = _Maker(dtype, seed)
    cases = []
    for desc, n, k, out, bias, activation, large in [
        ("bias", 8, 5, 3, True, None, False),
        ("bias-relu", 8, 5, 3, True, "relu", False),
        ("relu-no-bias", 8, 5, 3, False, "relu", False),
        ("no-bias", 8, 5, 3, False, None, False),
        ("1x1-to-1-relu", 1, 1, 1, True, "relu", False),
        ("odd-relu", 33, 17, 9, True, "relu", False),
        ("large-relu", 256, 96, 160, True, "relu", True),
        ("large-bias", 256, 96, 160, True, None, True),
        ("3d-input-bias-relu", (2, 5), 6, 4, True, "relu", False),
        ("4d-input-no-bias", (2, 3, 2), 5, 3, False, None, False),
        ("1d-input-bias", (), 7, 3, True, None, False),
        ("large-3d-input-relu", (8, 32), 96, 160, True, "relu", True),
    ]:
        leading = n if isinstance(n, tuple) else (n,)
        x = m.normal(*leading, k)
        weight = m.normal(out, k, scale=1 / np.sqrt(k))
        cases.append((desc, x, weight, m.normal(out) if bias else None, activation, large))
    return m, cases


def linear_forward_samples(dtype):
    _, cases = _linear_cases(dtype, 501)
    samples = [Sample(desc, dict(x=x, weight=w, bias=b, activation=act), large)
               for desc, x, w, b, act, large in cases]
    # A preallocated output, filled with nan (one large: the BLAS path).
    for sample in [samples[1], samples[7], next(s for s in samples if s.large)]:
        kwargs = sample.kwargs
        shape = kwargs["x"].shape[:-1] + kwargs["weight"].shape[:1]
        samples.append(Sample(sample.desc + "-out", dict(
            kwargs, out=np.full(shape, np.nan, dtype)), sample.large))
    return samples


def linear_backward_samples(dtype):
    m, cases = _linear_cases(dtype, 502)
    samples = []
    for desc, x, w, b, act, large in cases:
        y = oracle.linear_forward(x, w, b, activation=act).astype(dtype)
        dy = m.normal(*y.shape)
        base = dict(dy=dy, x=x, weight=w, activation=act, has_bias=b is not None)
        if act == "relu":
            base["y"] = y
        samples.append(Sample(desc, base, large))
        if not large:
            samples.append(Sample(desc + "-no-dx", dict(base, need_dx=False)))
        if desc in ("bias-relu", "large-bias", "3d-input-bias-relu"):
            # Gradients written into preallocated arrays (nan-filled): all
            # three, or only some (the others fresh), one Fortran-ordered.
            full = (np.full(x.shape, np.nan, dtype), np.full(w.shape, np.nan, dtype),
                    np.full(w.shape[:1], np.nan, dtype))
            samples.append(Sample(desc + "-out", dict(base, out=full), large))
            some = (None, np.asfortranarray(np.full(w.shape, np.nan, dtype)), None)
            samples.append(Sample(desc + "-out-dweight-fortran", dict(base, out=some), large))
    return samples


def linear_forward_scales(kw):
    """A product's entries may cancel: judge them against sum |x| |w| + |b|."""
    terms = np.abs(kw["x"].reshape(-1, kw["x"].shape[-1])) @ np.abs(kw["weight"]).T
    if kw.get("bias") is not None:
        terms = terms + np.abs(kw["bias"])
    return terms.max()


def linear_backward_scales(kw):
    dz = np.abs(kw["dy"]).reshape(-1, kw["dy"].shape[-1])
    x = np.abs(kw["x"]).reshape(-1, kw["x"].shape[-1])
    dx = (dz @ np.abs(kw["weight"])).max() if kw.get("need_dx", True) else None
    dbias = dz.sum(axis=0).max() if kw.get("has_bias", True) else None
    return (dx, (dz.T @ x).max(), dbias)


def linear_forward_errors():
    m = _Maker(np.dtype(np.float32), 503)
    base = dict(x=m.normal(5, 4), weight=m.normal(3, 4), bias=m.normal(3))
    return [
        _bad(base, "x-0d", ValueError, "x", x=np.array(1.0, np.float32)),
        _bad(base, "x-int", TypeError, "x", x=np.ones((5, 4), np.int64)),
        _bad(base, "x-complex", TypeError, "x", x=np.ones((5, 4), np.complex64)),
        _bad(base, "weight-features", ValueError, ("weight", "x"), weight=m.normal(3, 5)),
        _bad(base, "weight-1d", ValueError, "weight", weight=m.normal(4)),
        _bad(base, "weight-float64", TypeError, "weight", weight=np.ones((3, 4))),
        _bad(base, "bias-length", ValueError, "bias", bias=m.normal(4)),
        _bad(base, "bias-2d", ValueError, "bias", bias=m.normal(1, 3)),
        _bad(base, "bias-float64", TypeError, "bias", bias=np.ones(3)),
        _bad(base, "activation-unknown", ValueError, "activation", activation="gelu"),
        _bad(base, "x-empty", ValueError, "x", x=np.zeros((0, 4), np.float32)),
        _bad(base, "x-3d-features", ValueError, ("weight", "x"), x=m.normal(2, 5, 3)),
        _bad(base, "weight-empty", ValueError, "weight", weight=np.zeros((0, 4), np.float32),
             bias=None),
        _bad(base, "out-shape", ValueError, "out", out=np.zeros((5, 4), np.float32)),
        _bad(base, "out-float64", TypeError, "out", out=np.zeros((5, 3))),
        _bad(base, "out-readonly", ValueError, "out", out=_readonly(np.zeros((5, 3), np.float32))),
        _bad(base, "out-list", TypeError, "out", out=[[0.0] * 3] * 5),
    ] + _overlap_errors(base, "out", np.zeros((5, 3), np.float32), ("x", "weight", "bias"))


def linear_backward_errors():
    m = _Maker(np.dtype(np.float32), 504)
    base = dict(dy=m.normal(5, 3), x=m.normal(5, 4), weight=m.normal(3, 4),
                y=np.abs(m.normal(5, 3)), activation="relu")
    return [
        _bad(base, "relu-without-y", ValueError, "y", y=None),
        _bad(base, "y-shape", ValueError, "y", y=m.normal(5, 2)),
        _bad(base, "y-float64", TypeError, "y", y=np.ones((5, 3))),
        _bad(base, "dy-outputs", ValueError, ("dy", "weight"), dy=m.normal(5, 2)),
        _bad(base, "dy-batch", ValueError, ("dy", "x"), dy=m.normal(4, 3)),
        _bad(base, "x-features", ValueError, ("x", "weight"), x=m.normal(5, 5)),
        _bad(base, "dy-int", TypeError, "dy", dy=np.ones((5, 3), np.int64)),
        _bad(base, "weight-float64", TypeError, "weight", weight=np.ones((3, 4))),
        _bad(base, "activation-unknown", ValueError, "activation", activation="tanh"),
        _bad(base, "has_bias-int", TypeError, "has_bias", has_bias=1),
        _bad(base, "need_dx-string", TypeError, "need_dx", need_dx="yes"),
        _bad(base, "dy-3d-shape", ValueError, "dy", x=m.normal(2, 5, 4), dy=m.normal(10, 3),
             y=np.abs(m.normal(2, 5, 3))),
        _bad(base, "x-empty", ValueError, "x", x=np.zeros((0, 4), np.float32),
             dy=np.zeros((0, 3), np.float32), y=np.zeros((0, 3), np.float32)),
        _bad(base, "out-not-tuple", TypeError, "out", out=np.zeros((3, 4), np.float32)),
        _bad(base, "out-tuple-of-2", TypeError, "out", out=(None, None)),
        _bad(base, "out-dweight-shape", ValueError, "out",
             out=(None, np.zeros((4, 3), np.float32), None)),
        _bad(base, "out-dx-float64", TypeError, "out", out=(np.zeros((5, 4)), None, None)),
        _bad(base, "out-dbias-readonly", ValueError, "out",
             out=(None, None, _readonly(np.zeros(3, np.float32)))),
        _bad(base, "out-dbias-without-bias", ValueError, "out", has_bias=False,
             out=(None, None, np.zeros(3, np.float32))),
        _bad(base, "out-dx-without-need_dx", ValueError, "out", need_dx=False,
             out=(np.zeros((5, 4), np.float32), None, None)),
    ] + [ErrorCase(f"out-dweight-overlaps-{other}", dict(case.kwargs, out=(
             None, case.kwargs["out"], None)), ValueError, ("out", other))
         for other, case in ((o, ErrorCase("", _sharing(base, "out", np.zeros((3, 4), np.float32),
                                                           o), ValueError, ("out",)))
                             for o in ("dy", "x", "weight", "y"))]


OPS = [
    OpInfo("batchnorm_forward", batchnorm_forward_samples, batchnorm_forward_errors,
           _bn_running_stats, batchnorm_forward_scales),
    OpInfo("batchnorm_backward", batchnorm_backward_samples, batchnorm_backward_errors,
           _out, batchnorm_backward_scales),
    OpInfo("softmax", softmax_samples, softmax_errors),
    OpInfo("log_softmax", softmax_samples, softmax_errors, term_scales=log_softmax_scales),
    OpInfo("softmax_cross_entropy", softmax_cross_entropy_samples,
           softmax_cross_entropy_errors, term_scales=lambda kw: _ce_term_scales(kw)[0]),
    OpInfo("softmax_cross_entropy_backward", softmax_cross_entropy_backward_samples,
           softmax_cross_entropy_backward_errors,
           term_scales=lambda kw: _ce_term_scales(kw)[1]),
    OpInfo("softmax_cross_entropy_with_grad", softmax_cross_entropy_with_grad_samples,
           softmax_cross_entropy_with_grad_errors, _out, _ce_term_scales, out_index=1),
    OpInfo("linear_forward", linear_forward_samples, linear_forward_errors, _out,
           term_scales=linear_forward_scales, out_index=None),
    OpInfo("linear_backward", linear_backward_samples, linear_backward_errors, _out,
           term_scales=linear_backward_scales),
]
OPS_BY_NAME = {op.name: op for op in OPS}


# ---------------------------------------------------------------- optimizers
# In-place kernels: they return None and the suite compares the updated
# parameter and state with the oracle's float64 update of the same inputs.

def _sgd_updated(kwargs):
    return ("param", "momentum_buffer") if kwargs.get("momentum", 0.0) != 0 else ("param",)


def sgd_step_samples(dtype):
    m = _Maker(dtype, 601)
    samples = []

    def add(desc, shape, large=False, **options):
        kwargs = dict(param=m.normal(*shape), grad=m.normal(*shape, scale=0.5))
        if options.get("momentum", 0.0) != 0:
            kwargs["momentum_buffer"] = m.normal(*shape, scale=0.3)
        kwargs.update(options)
        samples.append(Sample(desc, kwargs, large))

    add("plain", (37,), lr=0.1)
    add("plain-2d-weight-decay", (5, 7), lr=0.05, weight_decay=0.01)
    add("momentum-first-step", (3, 4, 5), lr=0.1, momentum=0.9, first_step=True)
    add("momentum", (33,), lr=0.1, momentum=0.9)
    add("momentum-dampening", (6, 5), lr=0.02, momentum=0.8, dampening=0.8)
    add("nesterov-weight-decay", (19,), lr=0.1, momentum=0.9, nesterov=True,
        weight_decay=1e-3)
    add("nesterov-first-step", (4, 9), lr=0.1, momentum=0.5, nesterov=True, first_step=True)
    add("lr-0", (8,), lr=0.0, momentum=0.9)
    add("one-element", (1,), lr=0.3, momentum=0.9, weight_decay=0.1)
    add("mid-plain", (41000,), lr=0.1)
    add("mid-nesterov", (256, 161), lr=0.01, momentum=0.9, nesterov=True,
        weight_decay=5e-4)
    add("mid-momentum-first-step", (40003,), lr=0.1, momentum=0.9, first_step=True)
    # The numba kernels thread only from 2**19 elements.
    add("huge-momentum", (530001,), lr=0.1, momentum=0.9, weight_decay=1e-4, large=True)
    return samples


def sgd_step_errors():
    m = _Maker(np.dtype(np.float32), 602)
    base = dict(param=m.normal(4, 3), grad=m.normal(4, 3), momentum_buffer=m.normal(4, 3),
                lr=0.1, momentum=0.9)
    readonly = m.normal(4, 3)
    readonly.flags.writeable = False
    shared = m.normal(4, 3)
    return [
        _bad(base, "param-list", TypeError, "param", param=[[1.0, 2.0, 3.0]] * 4),
        _bad(base, "param-int", TypeError, "param", param=np.ones((4, 3), np.int64)),
        _bad(base, "param-readonly", ValueError, "param", param=readonly),
        _bad(base, "grad-shape", ValueError, "grad", grad=m.normal(3, 4)),
        _bad(base, "grad-float64", TypeError, "grad", grad=np.ones((4, 3))),
        _bad(base, "grad-bool", TypeError, "grad", grad=np.ones((4, 3), bool)),
        _bad(base, "grad-is-param", ValueError, "grad", param=shared, grad=shared),
        _bad(base, "momentum_buffer-missing", ValueError, "momentum_buffer",
             momentum_buffer=None),
        _bad(base, "momentum_buffer-shape", ValueError, "momentum_buffer",
             momentum_buffer=m.normal(12)),
        _bad(base, "momentum_buffer-float64", TypeError, "momentum_buffer",
             momentum_buffer=np.zeros((4, 3))),
        _bad(base, "momentum_buffer-readonly", ValueError, "momentum_buffer",
             momentum_buffer=readonly),
        _bad(base, "momentum_buffer-is-param", ValueError, "momentum_buffer",
             param=shared, momentum_buffer=shared),
        _bad(base, "lr-negative", ValueError, "lr", lr=-0.1),
        _bad(base, "lr-nan", ValueError, "lr", lr=float("nan")),
        _bad(base, "lr-string", TypeError, "lr", lr="0.1"),
        _bad(base, "momentum-negative", ValueError, "momentum", momentum=-0.9),
        _bad(base, "weight_decay-negative", ValueError, "weight_decay", weight_decay=-1e-4),
        _bad(base, "nesterov-without-momentum", ValueError, "nesterov", nesterov=True,
             momentum=0.0),
        _bad(base, "nesterov-with-dampening", ValueError, "nesterov", nesterov=True,
             dampening=0.1),
        _bad(base, "nesterov-not-bool", TypeError, "nesterov", nesterov=1),
        _bad(base, "first_step-not-bool", TypeError, "first_step", first_step="yes"),
    ]


def adam_step_samples(dtype):
    m = _Maker(dtype, 701)
    samples = []

    def add(desc, shape, step, large=False, **options):
        kwargs = dict(param=m.normal(*shape), grad=m.normal(*shape, scale=0.5),
                      exp_avg=m.normal(*shape, scale=0.1) if step > 1 else
                      np.zeros(shape, dtype),
                      exp_avg_sq=m.uniform(0, 0.05, *shape) if step > 1 else
                      np.zeros(shape, dtype), step=step)
        kwargs.update(options)
        samples.append(Sample(desc, kwargs, large))

    add("first-step", (37,), 1)
    add("2d-step-5", (5, 7), 5, lr=0.01)
    add("3d-l2-decay", (3, 4, 5), 3, lr=0.01, weight_decay=0.1)
    add("adamw", (29,), 2, lr=0.01, weight_decay=0.01, decoupled=True)
    add("adamw-no-decay", (6, 6), 7, lr=0.01, weight_decay=0.0, decoupled=True)
    add("betas-eps", (17,), 10, lr=0.1, beta1=0.5, beta2=0.9, eps=1e-3)
    add("beta-0", (11,), 4, lr=0.1, beta1=0.0, beta2=0.0)
    add("late-step", (9,), 100000, lr=1e-3)
    add("one-element", (1,), 2, lr=0.5)
    add("mid-first-step", (41000,), 1)
    add("mid-adamw", (256, 161), 12, lr=3e-3, weight_decay=0.05, decoupled=True)
    add("mid-l2", (40003,), 4, lr=1e-2, weight_decay=1e-3)
    add("huge-adamw", (530001,), 3, lr=1e-2, weight_decay=1e-2, decoupled=True, large=True)
    return samples


def adam_step_errors():
    m = _Maker(np.dtype(np.float32), 702)
    base = dict(param=m.normal(4, 3), grad=m.normal(4, 3), exp_avg=m.normal(4, 3),
                exp_avg_sq=m.uniform(0, 1, 4, 3), step=2)
    readonly = m.normal(4, 3)
    readonly.flags.writeable = False
    shared = m.normal(4, 3)
    return [
        _bad(base, "param-int", TypeError, "param", param=np.ones((4, 3), np.int32)),
        _bad(base, "param-complex", TypeError, "param", param=np.ones((4, 3), np.complex64)),
        _bad(base, "param-readonly", ValueError, "param", param=readonly),
        _bad(base, "grad-shape", ValueError, "grad", grad=m.normal(4, 4)),
        _bad(base, "grad-float64", TypeError, "grad", grad=np.ones((4, 3))),
        _bad(base, "exp_avg-missing", ValueError, "exp_avg", exp_avg=None),
        _bad(base, "exp_avg-shape", ValueError, "exp_avg", exp_avg=m.normal(4)),
        _bad(base, "exp_avg_sq-float64", TypeError, "exp_avg_sq", exp_avg_sq=np.ones((4, 3))),
        _bad(base, "exp_avg_sq-readonly", ValueError, "exp_avg_sq", exp_avg_sq=readonly),
        _bad(base, "exp_avg_sq-is-exp_avg", ValueError, "exp_avg_sq", exp_avg=shared,
             exp_avg_sq=shared),
        _bad(base, "grad-is-param", ValueError, "grad", param=shared, grad=shared),
        _bad(base, "step-0", ValueError, "step", step=0),
        _bad(base, "step-float", TypeError, "step", step=1.5),
        _bad(base, "lr-negative", ValueError, "lr", lr=-1e-3),
        _bad(base, "beta1-1", ValueError, "beta1", beta1=1.0),
        _bad(base, "beta2-negative", ValueError, "beta2", beta2=-0.1),
        _bad(base, "eps-negative", ValueError, "eps", eps=-1e-8),
        _bad(base, "weight_decay-negative", ValueError, "weight_decay", weight_decay=-0.01),
        _bad(base, "decoupled-not-bool", TypeError, "decoupled", decoupled=None),
    ]


OPS.extend([
    OpInfo("sgd_step", sgd_step_samples, sgd_step_errors, _sgd_updated),
    OpInfo("adam_step", adam_step_samples, adam_step_errors,
           lambda kwargs: ("param", "exp_avg", "exp_avg_sq")),
])
OPS_BY_NAME.update((op.name, op) for op in OPS[-2:])
