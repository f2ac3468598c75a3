"""Optimizers and learning-rate schedules with torch.optim's semantics: ``fastnn.optim``.

``SGD``, ``Adam`` and ``AdamW`` update parameters (``fastnn.nn.Parameter``)
from their ``.grad`` with the ``sgd_step`` / ``adam_step`` kernels of the
current backend: one pass over the parameter, its gradient and its state,
no NumPy temporaries.  ``StepLR`` and ``CosineAnnealingLR`` change the
learning rate once per epoch (``scheduler.step()``), as PyTorch's do.

The update rules (the formulas are in ``fastnn/_backends/numpy/optim.py``):

- SGD: ``v = momentum * v + (1 - dampening) * g``, ``p -= lr * v`` (or
  along ``g + momentum * v`` with Nesterov); PyTorch's buffer, and so
  fastnn's, starts as the first gradient.  The course writes momentum as
  ``v = beta * v + (1 - beta) * dW`` from ``v = 0``: that is
  ``SGD(momentum=beta, dampening=beta)`` from the second step on (on the
  first step the course's v is ``(1 - beta) * dW``, PyTorch's is ``dW``).
- Adam: bias-corrected moments, eps added after the square root of the
  corrected second moment; ``weight_decay`` is L2 added to the gradient.
- AdamW: Adam with decoupled decay, ``p *= 1 - lr * weight_decay`` first.

Memory layout, and why: an optimizer copies the parameters of each group
(of one dtype) into one flat buffer and makes each ``Parameter.data`` a
view of its part (values unchanged; the layers read ``.data`` on every
call); its state (momentum buffer, moments) lives in flat buffers beside
it.  A group of at most ``FLAT_GRADS_MAX_ELEMENTS`` values also copies its
gradients into a flat buffer and updates everything in ONE kernel call:
for small models the fixed cost per call (checks, dispatch, waking
threads) outweighs the copy.  Larger groups run one call per parameter on
its gradient in place, where a copy of the gradients would cost more than
the calls.  A parameter without a gradient is skipped, as in PyTorch.

Test: tests/test_optim.py (against torch.optim, every backend, both dtypes).
"""

import math
import numbers

import numpy as np

from . import _registry
from . import _validate as v
from .nn.module import Module, Parameter

# Groups up to this many values take the single-call path: for a small model
# one call with the gradients copied into the flat buffer beats a call per
# parameter, while for a large one the copy costs more than the calls it
# saves (docs/PERFORMANCE.md, "Layers and the training loop").
FLAT_GRADS_MAX_ELEMENTS = 1 << 18

_ABSENT = {dtype: np.empty(0, dtype) for dtype in v.FLOAT_DTYPES}


class _Segment:
    """The parameters of one group and one dtype, packed into flat buffers."""

    def __init__(self, params, dtype):
        self.params = params
        self.dtype = dtype
        sizes = [p.data.size for p in params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.size = self.offsets[-1]
        self.data = np.empty(self.size, dtype)
        self.flat_views = [self.data[a:b] for a, b in zip(self.offsets, self.offsets[1:])]
        self.views = []
        for p, flat in zip(params, self.flat_views):
            flat[...] = p.data.reshape(-1)
            view = flat.reshape(p.data.shape)
            p.data = view
            self.views.append(view)
        self.grad = (np.empty(self.size, dtype) if self.size <= FLAT_GRADS_MAX_ELEMENTS
                     else None)
        self.state = {}             # name -> flat buffer
        self.steps = [0] * len(params)      # updates done, per parameter
        self.buffered = [False] * len(params)   # SGD: momentum buffer started, per parameter

    def parts(self, flat):
        """1-D views of ``flat``, one per parameter."""
        return [flat[a:b] for a, b in zip(self.offsets, self.offsets[1:])]

    def state_buffer(self, name):
        buffer = self.state.get(name)
        if buffer is None:
            buffer = self.state[name] = np.zeros(self.size, self.dtype)
        return buffer

    def repack(self):
        """Re-adopt parameters whose ``.data`` was replaced since packing."""
        for i, p in enumerate(self.params):
            if p.data is not self.views[i]:
                if p.data.shape != self.views[i].shape:
                    raise ValueError(f"params: expected parameter {i} of the group to keep "
                                     f"shape {self.views[i].shape}, got {p.data.shape}")
                self.flat_views[i][...] = np.asarray(p.data, self.dtype).reshape(-1)
                p.data = self.views[i]


def _param_list(params):
    if isinstance(params, Module):
        return params.parameters()
    if isinstance(params, Parameter):
        raise TypeError("params: expected an iterable of Parameters (e.g. "
                        "model.parameters()), got a single Parameter")
    return list(params)


class Optimizer:
    """Base of the optimizers: parameter groups, packing, state, zero_grad."""

    _STATE_NAMES = ()

    def __init__(self, params, defaults):
        entries = _param_list(params)
        if not entries:
            raise ValueError("params: expected at least one parameter, got an empty list")
        groups = entries if isinstance(entries[0], dict) else [{"params": entries}]
        self.defaults = dict(defaults)
        self.param_groups = []
        seen = set()
        for index, group in enumerate(groups):
            if not isinstance(group, dict) or "params" not in group:
                raise TypeError(f"params[{index}]: expected a dict with 'params', got "
                                f"{type(group).__name__}")
            members = _param_list(group["params"])
            for p in members:
                if not isinstance(p, Parameter):
                    raise TypeError(f"params: expected fastnn.nn.Parameter objects, got "
                                    f"{type(p).__name__}")
                if id(p) in seen:
                    raise ValueError("params: expected each parameter once, got one twice")
                seen.add(id(p))
                if p.data.dtype not in v.FLOAT_DTYPES:
                    raise TypeError(f"params: expected float32 or float64 parameters, got "
                                    f"{p.data.dtype}")
            options = {k: group[k] for k in group if k != "params"}
            unknown = [k for k in options if k not in self.defaults]
            if unknown:
                raise ValueError(f"{unknown[0]}: expected one of the options "
                                 f"{', '.join(self.defaults)}, got an unknown one")
            full = dict(self.defaults, **options)
            self._check_options(full)
            full["params"] = members
            self.param_groups.append(full)
        self._segments = []         # per group: [_Segment per dtype]
        for group in self.param_groups:
            by_dtype = {}
            for p in group["params"]:
                by_dtype.setdefault(p.data.dtype, []).append(p)
            self._segments.append([_Segment(ps, dt) for dt, ps in by_dtype.items()])

    def _check_options(self, options):
        raise NotImplementedError

    def zero_grad(self):
        """Forget every gradient (``grad = None``, PyTorch's default)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _gradients(self, segment, group_index):
        """Each parameter's gradient as a C-contiguous array (None: skipped),
        all checked before anything is updated."""
        grads = []
        for i, p in enumerate(segment.params):
            g = p.grad
            if g is not None:
                if type(g) is not np.ndarray:
                    g = np.asarray(g)
                if g.dtype != segment.dtype:
                    raise TypeError(f"grad: expected dtype {segment.dtype} for parameter "
                                    f"{i} of group {group_index}, got {g.dtype}")
                if g.shape != p.data.shape:
                    raise ValueError(f"grad: expected shape {p.data.shape} for parameter "
                                     f"{i} of group {group_index}, got {g.shape}")
                if not g.flags.c_contiguous:
                    g = np.ascontiguousarray(g)
            grads.append(g)
        return grads

    def step(self):
        """Update every parameter that has a gradient."""
        work = []
        for group_index, (group, segments) in enumerate(zip(self.param_groups,
                                                            self._segments)):
            self._check_options(group)
            for segment in segments:
                segment.repack()
                work.append((group, segment, self._gradients(segment, group_index)))
        for group, segment, grads in work:
            self._update(group, segment, grads)

    def _update(self, group, segment, grads):
        raise NotImplementedError

    @staticmethod
    def _single_call(segment, grads, *state_flags):
        """True when one kernel call can update the whole segment: every
        gradient present, the same step count (and state) everywhere, and
        a flat gradient buffer to gather the gradients into."""
        if segment.grad is None or any(g is None for g in grads):
            return False
        if len(set(segment.steps)) != 1:
            return False
        for flags in state_flags:
            if len(set(flags)) != 1:
                return False
        for part, g in zip(segment.parts(segment.grad), grads):
            part[...] = g.reshape(-1)
        return True

    # ------------------------------------------------------------ state

    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [{options, "params": [indices]}]}``
        as torch.optim's: parameters are numbered across groups in order,
        and only parameters updated at least once have state (copies)."""
        state, groups, index = {}, [], 0
        for group, segments in zip(self.param_groups, self._segments):
            numbers = {}
            for segment in segments:
                for i, p in enumerate(segment.params):
                    numbers[id(p)] = (segment, i)
            indices = []
            for p in group["params"]:
                segment, i = numbers[id(p)]
                if segment.steps[i] > 0:
                    entry = self._param_state(segment, i)
                    state[index] = entry
                indices.append(index)
                index += 1
            groups.append(dict({k: val for k, val in group.items() if k != "params"},
                               params=indices))
        return {"state": state, "param_groups": groups}

    def _param_state(self, segment, i):
        raise NotImplementedError

    def load_state_dict(self, state_dict):
        """Take back a ``state_dict()`` of an optimizer over parameters of the
        same shapes; everything is checked before anything is changed."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("state_dict: expected a dict with 'state' and 'param_groups', "
                             f"got {type(state_dict).__name__}")
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict: expected {len(self.param_groups)} parameter "
                             f"groups, got {len(groups)}")
        located, index = {}, 0
        for group, given, segments in zip(self.param_groups, groups, self._segments):
            if len(given["params"]) != len(group["params"]):
                raise ValueError(f"state_dict: expected {len(group['params'])} parameters "
                                 f"in a group, got {len(given['params'])}")
            where = {id(p): (segment, i) for segment in segments
                     for i, p in enumerate(segment.params)}
            for p, number in zip(group["params"], given["params"]):
                located[int(number)] = where[id(p)] + (p,)
            options = dict(group, **{k: val for k, val in given.items() if k != "params"})
            self._check_options(options)
            index += len(group["params"])
        updates = []
        for number, entry in state_dict["state"].items():
            if int(number) not in located:
                raise ValueError(f"state_dict: expected state for parameters 0..{index - 1}, "
                                 f"got state for parameter {number}")
            segment, i, p = located[int(number)]
            updates.append((segment, i, self._checked_state(entry, p, number)))
        for group, given in zip(self.param_groups, groups):
            for k, val in given.items():
                if k != "params":
                    group[k] = tuple(val) if isinstance(val, (list, np.ndarray)) else val
        for segments in self._segments:
            for segment in segments:
                segment.steps = [0] * len(segment.params)
        for segment, i, entry in updates:
            self._load_param_state(segment, i, entry)

    def _checked_state(self, entry, p, number):
        checked = {}
        for name in self._STATE_NAMES:
            if name not in entry or entry[name] is None:
                continue
            array = np.asarray(entry[name])
            if array.shape != p.data.shape or array.dtype != p.data.dtype:
                raise ValueError(f"state_dict: expected {name} of parameter {number} with "
                                 f"shape {p.data.shape} and dtype {p.data.dtype}, got "
                                 f"{array.shape} {array.dtype}")
            checked[name] = array
        step = entry.get("step", 1)
        step = int(np.asarray(step).item())
        if step < 1:
            raise ValueError(f"state_dict: expected step >= 1 for parameter {number}, "
                             f"got {step}")
        checked["step"] = step
        return checked

    def _load_param_state(self, segment, i, entry):
        for name in self._STATE_NAMES:
            if name in entry:
                segment.parts(segment.state_buffer(name))[i][...] = entry[name].reshape(-1)
        segment.steps[i] = entry["step"]

    def __repr__(self):
        options = ", ".join(f"{k}={val}" for k, val in self.param_groups[0].items()
                            if k != "params")
        return f"{type(self).__name__}({options})"


def _nonnegative(name, value):
    return v.real(name, value, 0.0)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2
    weight decay, ``torch.optim.SGD``'s twin (see the module's header)."""

    _STATE_NAMES = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _check_options(self, options):
        options["lr"] = _nonnegative("lr", options["lr"])
        options["momentum"] = _nonnegative("momentum", options["momentum"])
        options["dampening"] = v.real("dampening", options["dampening"])
        options["weight_decay"] = _nonnegative("weight_decay", options["weight_decay"])
        options["nesterov"] = v.flag("nesterov", options["nesterov"])
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError(f"nesterov: expected momentum > 0 and dampening 0 for "
                             f"Nesterov momentum, got momentum={options['momentum']}, "
                             f"dampening={options['dampening']}")

    def _update(self, group, segment, grads):
        kernel = _registry.kernel("sgd_step")
        lr, momentum = group["lr"], group["momentum"]
        options = (lr, momentum, group["dampening"], group["nesterov"], group["weight_decay"])
        buffered = segment.buffered
        if momentum != 0:
            buffer = segment.state_buffer("momentum_buffer")
        if self._single_call(segment, grads, buffered):
            state = buffer if momentum != 0 else _ABSENT[segment.dtype]
            kernel(segment.data, segment.grad, state, *options,
                   momentum != 0 and not buffered[0])
            if momentum != 0:
                segment.buffered = [True] * len(segment.params)
            segment.steps = [segment.steps[0] + 1] * len(segment.params)
            return
        buffers = segment.parts(buffer) if momentum != 0 else None
        for i, g in enumerate(grads):
            if g is None:
                continue
            state = buffers[i] if momentum != 0 else _ABSENT[segment.dtype]
            kernel(segment.flat_views[i], g.reshape(-1), state, *options,
                   momentum != 0 and not buffered[i])
            if momentum != 0:
                buffered[i] = True
            segment.steps[i] += 1

    def _param_state(self, segment, i):
        if not segment.buffered[i]:
            return {"momentum_buffer": None}
        return {"momentum_buffer": segment.parts(segment.state["momentum_buffer"])[i]
                .reshape(segment.params[i].data.shape).copy()}

    def _load_param_state(self, segment, i, entry):
        super()._load_param_state(segment, i, entry)
        segment.buffered[i] = "momentum_buffer" in entry

    def load_state_dict(self, state_dict):
        for segments in self._segments:
            for segment in segments:
                segment.buffered = [False] * len(segment.params)
        super().load_state_dict(state_dict)


class Adam(Optimizer):
    """Adam with L2 ``weight_decay``, ``torch.optim.Adam``'s twin (bias-corrected;
    eps after the square root of the corrected second moment)."""

    _STATE_NAMES = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_options(self, options):
        options["lr"] = _nonnegative("lr", options["lr"])
        betas = options["betas"]
        if (isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__")
                or len(betas) != 2):
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        for name, beta in zip(("betas[0]", "betas[1]"), betas):
            beta = v.real(name, beta, 0.0, 1.0)
            if beta == 1.0:
                raise ValueError(f"{name}: expected a value in [0, 1), got {beta!r}")
        options["betas"] = (float(betas[0]), float(betas[1]))
        options["eps"] = _nonnegative("eps", options["eps"])
        options["weight_decay"] = _nonnegative("weight_decay", options["weight_decay"])

    def _update(self, group, segment, grads):
        kernel = _registry.kernel("adam_step")
        beta1, beta2 = group["betas"]
        options = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                   self._decoupled)
        exp_avg = segment.state_buffer("exp_avg")
        exp_avg_sq = segment.state_buffer("exp_avg_sq")
        if self._single_call(segment, grads):
            step = segment.steps[0] + 1
            kernel(segment.data, segment.grad, exp_avg, exp_avg_sq, step, *options)
            segment.steps = [step] * len(segment.params)
            return
        first, second = segment.parts(exp_avg), segment.parts(exp_avg_sq)
        for i, g in enumerate(grads):
            if g is None:
                continue
            step = segment.steps[i] + 1
            kernel(segment.flat_views[i], g.reshape(-1), first[i], second[i], step, *options)
            segment.steps[i] = step

    def _param_state(self, segment, i):
        shape = segment.params[i].data.shape
        return {"step": segment.steps[i],
                "exp_avg": segment.parts(segment.state["exp_avg"])[i].reshape(shape).copy(),
                "exp_avg_sq": segment.parts(segment.state["exp_avg_sq"])[i]
                .reshape(shape).copy()}


class AdamW(Adam):
    """Adam with decoupled weight decay, ``torch.optim.AdamW``'s twin:
    ``p *= 1 - lr * weight_decay`` before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ---------------------------------------------------------------- schedules

class _Scheduler:
    """Base of the schedules: ``step()`` once per epoch sets each group's ``lr``."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a fastnn.optim optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self):
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self._next_lrs()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        return list(self._last_lr)

    def state_dict(self):
        return {k: val for k, val in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state):
        self.__dict__.update({k: val for k, val in state.items() if k != "optimizer"})
        self.base_lrs = [float(b) for b in self.base_lrs]
        self._last_lr = [float(b) for b in self._last_lr]
        self.last_epoch = int(self.last_epoch)


def _positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value}")
    return int(value)


class StepLR(_Scheduler):
    """Multiply each group's lr by ``gamma`` every ``step_size`` epochs
    (``torch.optim.lr_scheduler.StepLR``)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _positive_int("step_size", step_size)
        self.gamma = v.real("gamma", gamma, 0.0)
        super().__init__(optimizer)

    def _next_lrs(self):
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]


class CosineAnnealingLR(_Scheduler):
    """Cosine annealing from each base lr to ``eta_min`` over ``T_max`` epochs
    (``torch.optim.lr_scheduler.CosineAnnealingLR``):
    ``lr_t = eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2``,
    applied step to step from the current lr as PyTorch does, so a changed
    lr carries on along the curve; past T_max it climbs back (period 2 T_max)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _positive_int("T_max", T_max)
        self.eta_min = v.real("eta_min", eta_min, 0.0)
        super().__init__(optimizer)

    def _next_lrs(self):
        t, T, low = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if (t - 1 - T) % (2 * T) == 0:
            # At the bottom of the curve the step-to-step ratio is 0/0:
            # step up by the curve's increment instead.
            return [group["lr"] + (base - low) * (1 - math.cos(math.pi / T)) / 2
                    for group, base in zip(groups, self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [low + (group["lr"] - low) * ratio for group in groups]
