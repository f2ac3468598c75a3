"""Optimizer updates, the readable reference: one SGD or Adam step, in place.

Shapes: ``param``, ``grad`` and every state array are 1-D of one length P
(the API passes flat views of a parameter of any shape).  Arithmetic is in
the arrays' dtype, the hyperparameters rounded to it, as torch.optim does.

SGD (``torch.optim.SGD``), p the parameter, g its gradient, b the momentum
buffer (zero-length and unused when momentum is 0):

    g = g + weight_decay * p
    b = g                                        on the first step
    b = momentum * b + (1 - dampening) * g       on every later one
    g = g + momentum * b    (nesterov)   or   g = b
    p = p - lr * g

Adam and AdamW (``torch.optim.Adam``, ``torch.optim.AdamW``), t the step
count after this step (1 on the first), m and v the first and second moments:

    p = p * (1 - lr * weight_decay)              AdamW (decoupled=True)
    g = g + weight_decay * p                     Adam (decoupled=False)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g^2
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Test: tests/test_ops.py runs both through the conformance suite (the float64
oracle is tests/oracle.py); tests/test_optim.py checks them against
torch.optim.
"""

import math

import numpy as np


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, nesterov,
             weight_decay, first_step):
    real = param.dtype.type
    g = grad
    if weight_decay != 0:
        g = g + real(weight_decay) * param
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= real(momentum)
            momentum_buffer += real(1 - dampening) * g
        g = g + real(momentum) * momentum_buffer if nesterov else momentum_buffer
    param -= real(lr) * g


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
              weight_decay, decoupled):
    real = param.dtype.type
    g = grad
    if weight_decay != 0:
        if decoupled:
            param *= real(1 - lr * weight_decay)
        else:
            g = g + real(weight_decay) * param
    exp_avg *= real(beta1)
    exp_avg += real(1 - beta1) * g
    exp_avg_sq *= real(beta2)
    exp_avg_sq += real(1 - beta2) * (g * g)
    step_size = real(lr / (1 - beta1 ** step))
    bias_correction2_sqrt = real(math.sqrt(1 - beta2 ** step))
    denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + real(eps)
    param -= step_size * (exp_avg / denom)
