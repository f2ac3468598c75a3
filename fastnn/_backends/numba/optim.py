"""Optimizer updates for the numba backend: one SGD or Adam step, in place,
in one pass over the parameter, its gradient and its state.

Shapes: param, grad and the state arrays are C-contiguous, 1-D, of one
length P (the API flattens parameters of any shape); the formulas are those
of the NumPy reference (``fastnn/_backends/numpy/optim.py``).  Each element
is read once and written once; nothing is allocated.

- Arithmetic is in the arrays' dtype: the Python wrappers below round every
  hyperparameter (and the bias corrections, computed in float64) to that
  dtype before the call, so float32 runs 8 lanes wide as torch.optim's
  float32 arithmetic does, and Numba does not promote it to float64.
- The loops branch only on loop-invariant flags (momentum, Nesterov, weight
  decay form); LLVM unswitches them, so each case is a plain vector loop.
- Parallel from ``_PARALLEL_MIN_ELEMENTS`` (below): fixed blocks of
  ``_BLOCK`` elements, one ``prange`` iteration each.  No value depends on
  another element, so results are bitwise those of the serial build at
  every thread count.

Test: the conformance suite (tests/) against the float64 oracle, both
dtypes, 1 and 2 threads.  Bench: the training-step measurement of the
README (``fastnn.optim.Adam`` runs this kernel).
"""

import math

import numpy as np
from numba import prange

from ._jit import serial_and_parallel, use_parallel

# Elements per parallel block (64 KiB of float32 per array): many blocks for
# a large layer, few enough that scheduling one costs nothing against it.
_BLOCK = 1 << 14

# Threads only from this many elements: an update moves 7 values per element
# and is over in microseconds, while waking the pool (sleeping under
# OMP_WAIT_POLICY=PASSIVE, see _jit.py) costs 40-50 us; 2**19 is where the
# two measured level (docs/PERFORMANCE.md, "Optimizer steps").
_PARALLEL_MIN_ELEMENTS = 1 << 19


def _sgd_blocks(param, grad, buffer, lr, momentum, damped, nesterov, weight_decay,
                first_step):
    """SGD over blocks of _BLOCK elements; ``damped`` is 1 - dampening."""
    size = param.size
    use_momentum = buffer.size != 0
    for block in prange((size + _BLOCK - 1) // _BLOCK):
        start = block * _BLOCK
        stop = min(start + _BLOCK, size)
        p = param[start:stop]
        g = grad[start:stop]
        if not use_momentum:
            for i in range(p.size):
                step = g[i]
                if weight_decay != 0:
                    step = step + weight_decay * p[i]
                p[i] = p[i] - lr * step
            continue
        b = buffer[start:stop]
        for i in range(p.size):
            step = g[i]
            if weight_decay != 0:
                step = step + weight_decay * p[i]
            if first_step:
                velocity = step
            else:
                velocity = momentum * b[i] + damped * step
            b[i] = velocity
            if nesterov:
                step = step + momentum * velocity
            else:
                step = velocity
            p[i] = p[i] - lr * step


def _adam_blocks(param, grad, exp_avg, exp_avg_sq, step_size, beta1, one_minus_beta1,
                 beta2, one_minus_beta2, bias_correction2_sqrt, eps, decay, decoupled):
    """Adam over blocks of _BLOCK elements.

    ``decay`` is 1 - lr * weight_decay for AdamW (``decoupled``) and the L2
    coefficient weight_decay for Adam; 0 means no decay of either kind.
    """
    size = param.size
    for block in prange((size + _BLOCK - 1) // _BLOCK):
        start = block * _BLOCK
        stop = min(start + _BLOCK, size)
        p = param[start:stop]
        g = grad[start:stop]
        m = exp_avg[start:stop]
        v = exp_avg_sq[start:stop]
        for i in range(p.size):
            value = p[i]
            gradient = g[i]
            if decoupled:
                value = value * decay
            elif decay != 0:
                gradient = gradient + decay * value
            first = beta1 * m[i] + one_minus_beta1 * gradient
            second = beta2 * v[i] + one_minus_beta2 * (gradient * gradient)
            m[i] = first
            v[i] = second
            denom = np.sqrt(second) / bias_correction2_sqrt + eps
            p[i] = value - step_size * (first / denom)


# Scalars arrive rounded to the arrays' dtype (F), see the module header.
_sgd_serial, _sgd_parallel = serial_and_parallel(
    "void(F[::1], F[::1], F[::1], F, F, F, boolean, F, boolean)")(_sgd_blocks)
_adam_serial, _adam_parallel = serial_and_parallel(
    "void(F[::1], F[::1], F[::1], F[::1], F, F, F, F, F, F, F, F, boolean)")(_adam_blocks)


def _threads_pay(size):
    return size >= _PARALLEL_MIN_ELEMENTS and use_parallel(size)


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, nesterov,
             weight_decay, first_step):
    real = param.dtype.type
    kernel = _sgd_parallel if _threads_pay(param.size) else _sgd_serial
    kernel(param, grad, momentum_buffer, real(lr), real(momentum), real(1 - dampening),
           bool(nesterov), real(weight_decay), bool(first_step))


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled):
    real = param.dtype.type
    decoupled = bool(decoupled) and weight_decay != 0
    decay = 1 - lr * weight_decay if decoupled else weight_decay
    kernel = _adam_parallel if _threads_pay(param.size) else _adam_serial
    kernel(param, grad, exp_avg, exp_avg_sq, real(lr / (1 - beta1 ** step)), real(beta1),
           real(1 - beta1), real(beta2), real(1 - beta2),
           real(math.sqrt(1 - beta2 ** step)), real(eps), real(decay), decoupled)
