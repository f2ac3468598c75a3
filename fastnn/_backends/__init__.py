"""The backend contract: what every fastnn backend implements.

A backend is a module that defines every kernel named in ``KERNELS`` below,
with exactly the signature the NumPy reference (``fastnn._backends.numpy``)
gives it.  The public API (``fastnn/_api/``) validates every argument
before it calls a kernel, so a kernel may rely on all of this:

- every floating array of the call has one dtype, ``float32`` or ``float64``;
- shapes agree with each other (they are listed per kernel below);
- integer class targets are an ``int64`` array whose values are in
  ``[0, C)`` or equal to ``ignore_index``; probability targets are floating;
- option values are already checked and normalized (``axis`` is
  non-negative, ``reduction`` is one of ``"mean" | "sum" | "none"``, ...);
- no data array is empty (``x``, ``logits`` and Linear's ``weight`` have at
  least one element);
- arrays may have any strides and memory order: a kernel that needs
  contiguous data makes its own contiguous copy.

A kernel never modifies its inputs, except ``running_mean``/``running_var``
(updated in place in training) and an explicit ``out``.  Gradients come back
as fresh arrays.

Dimension letters: N is the batch, C the channels (batch norm) or the classes
(cross-entropy), S the product of the spatial dimensions of a batch-norm
input ``(N, C, *spatial)``, K the input features and M the output features of
a Linear layer.

==============================  ==================================================
kernel                          signature (arguments after validation)
==============================  ==================================================
batchnorm_forward               (x[N,C,*sp], weight[C]|None, bias[C]|None,
                                running_mean[C]|None, running_var[C]|None,
                                training, momentum, eps, out|None)
                                -> (y, mean[C], invstd[C])
batchnorm_backward              (dy, x, weight|None, mean[C], invstd[C], training,
                                out|None) -> (dx, dweight|None, dbias|None)
softmax                         (x, axis) -> y
log_softmax                     (x, axis) -> y
softmax_cross_entropy           (logits[N,C], target, weight[C]|None, ignore_index,
                                reduction, label_smoothing) -> loss
softmax_cross_entropy_backward  (logits, target, grad_loss, weight, ignore_index,
                                reduction, label_smoothing) -> dlogits[N,C]
softmax_cross_entropy_with_grad (logits, target, weight, ignore_index, reduction,
                                label_smoothing, out[N,C]|None) -> (loss, dlogits)
linear_forward                  (x[N,K], weight[M,K], bias[M]|None, activation)
                                -> y[N,M]
linear_backward                 (dy[N,M], x[N,K], weight[M,K], y[N,M]|None,
                                activation, has_bias, need_dx)
                                -> (dx|None, dweight, dbias|None)
sgd_step                        (param[P], grad[P], momentum_buffer[P]|[0], lr,
                                momentum, dampening, nesterov, weight_decay,
                                first_step) -> None  (param, buffer in place)
adam_step                       (param[P], grad[P], exp_avg[P], exp_avg_sq[P],
                                step, lr, beta1, beta2, eps, weight_decay,
                                decoupled) -> None  (param and moments in place)
==============================  ==================================================

``target`` is either ``int64[N]`` (class indices) or a floating ``[N, C]``
array (probabilities).  ``grad_loss`` is a Python float for ``"mean"`` and
``"sum"`` and a floating ``[N]`` array for ``"none"``.  ``loss`` is a 0-d
array for ``"mean"``/``"sum"`` and ``[N]`` for ``"none"``; the gradient that
``softmax_cross_entropy_with_grad`` returns is that of ``loss.sum()``.
``out``, when given, is a writeable ``[N, C]`` array of the logits' dtype
(possibly ``logits`` itself); the kernel writes the gradient into it and
returns it.  ``activation`` is ``None`` or ``"relu"``.  In evaluation
(``training=False``) ``batchnorm_forward`` returns the running mean and
``1/sqrt(running_var + eps)`` as ``mean`` and ``invstd``.

The optimizer steps follow the newer contract of every kernel: each array
is a C-contiguous ndarray of the call's one float dtype, writeable where
updated; parameters arrive as 1-D views of P elements (the API copies in
and out an argument that is not contiguous); an absent state array is a
zero-length array of that dtype (``momentum_buffer`` when momentum is 0),
never None; scalars are Python float, int or bool; ``step`` is the step
count after this step (>= 1); ``decoupled=True`` is AdamW's decay.
"""

KERNELS = (
    "batchnorm_forward",
    "batchnorm_backward",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_with_grad",
    "linear_forward",
    "linear_backward",
    "sgd_step",
    "adam_step",
)
