"""The backend contract: what a fastnn backend implements, in what layout.

A backend is a module defining kernels named in ``KERNELS`` below, each with
exactly the signature listed (the NumPy reference, ``fastnn._backends.numpy``,
has every one).  A backend may lack some kernels: the registry tracks
availability per kernel (``fastnn.kernel_status()``).

The public API (``fastnn/_api/``) validates every argument and decides the
layout before it calls a kernel, so a kernel relies on all of this and
checks none of it:

- every floating array of a call has one dtype, ``float32`` or ``float64``;
  integer class labels are ``int64``;
- every array is aligned, C-contiguous and has its writeable flag set (the
  API copies an input that is not; read-only or strided inputs are rare),
  except that the Linear kernels' matrix operands ``x``, ``weight`` and
  ``dy`` are only "BLAS-readable": unit stride along one axis and a stride
  of at least the extent along the other (a transposed view is passed as
  it is);
- shapes are the canonical ones of the table below: batch norm sees
  ``(N, C, S)`` (an ``(N, C)`` input has S = 1, spatial axes are flattened),
  softmax sees ``(R, L)`` rows with the softmax axis last, cross-entropy
  ``(N, C)`` logits (a segmentation input's extra axes moved into N),
  Linear ``(N, K)`` inputs (leading axes flattened into N);
- an absent optional array is a zero-length stand-in of the call's dtype
  (``(0,)``, or ``(0, 0)`` where the array would be 2-D), never None;
- outputs are allocated by the API (or are the caller's ``out``) and passed
  in; a kernel writes every element of each output it is given and returns
  only Python scalars (or None);
- no output shares memory with an input, except where the table says so;
- option values are checked Python scalars: bool, int, float, and
  ``reduction`` one of ``"mean" | "sum" | "none"``;
- no data array is empty.

A kernel never modifies an input, except ``running_mean``/``running_var``
(updated in place in training).  Kernels may allocate scratch memory.

Dimension letters: N is the batch (the rows), C the channels (batch norm) or
the classes (cross-entropy), S the product of the spatial dimensions of a
batch-norm input, R and L the rows and their length for softmax, K the input
and M the output features of a Linear layer, P the elements of a parameter.

===============================  =========================================================
kernel                           signature (-> what it returns)
===============================  =========================================================
batchnorm_forward                (x[N,C,S], weight[C|0], bias[C|0], running_mean[C|0],
                                 running_var[C|0], training, momentum, eps,
                                 y[N,C,S], mean[C], invstd[C]) -> None
batchnorm_backward               (dy[N,C,S], x[N,C,S], weight[C|0], mean[C], invstd[C],
                                 training, dx[N,C,S], dweight[C|0], dbias[C|0]) -> None
softmax                          (x[R,L], y[R,L]) -> None
log_softmax                      (x[R,L], y[R,L]) -> None
softmax_cross_entropy            (logits[N,C], labels[N|0], probs[N,C|0,0], weight[C|0],
                                 ignore_index, reduction, label_smoothing, losses[N|0])
                                 -> float
softmax_cross_entropy_backward   (logits, labels, probs, weight, ignore_index, reduction,
                                 label_smoothing, grad_loss, grad_rows[N|0],
                                 dlogits[N,C]) -> None
softmax_cross_entropy_with_grad  (logits, labels, probs, weight, ignore_index, reduction,
                                 label_smoothing, dlogits[N,C], losses[N|0]) -> float
linear_forward                   (x[N,K], weight[M,K], bias[M|0], relu, y[N,M]) -> None
linear_backward                  (dy[N,M], x[N,K], weight[M,K], y[N,M|0,0], relu,
                                 dx[N,K|0,0], dweight[M,K], dbias[M|0]) -> None
sgd_step                         (param[P], grad[P], momentum_buffer[P|0], lr, momentum,
                                 dampening, nesterov, weight_decay, first_step) -> None
adam_step                        (param[P], grad[P], exp_avg[P], exp_avg_sq[P], step, lr,
                                 beta1, beta2, eps, weight_decay, decoupled) -> None
===============================  =========================================================

Batch norm: ``mean`` and ``invstd`` receive the statistics used, the batch's
in training (biased variance; the running statistics move toward the batch
mean and the unbiased variance by ``momentum``) and the running ones in
evaluation, where ``running_mean``/``running_var`` are always given.
``dweight``/``dbias`` are zero-length exactly when ``weight`` is.

Cross-entropy: exactly one of ``labels`` (class indices in ``[0, C)`` or
equal to ``ignore_index``) and ``probs`` (target probabilities) is given.
The loss-returning kernels return the reduced loss (``"mean"``/``"sum"``) as
a float, or for ``"none"`` write the per-row losses into ``losses`` (which
is zero-length otherwise) and return 0.0.  ``softmax_cross_entropy_backward``
writes the gradient of the reduced loss times ``grad_loss`` (a float), or
for ``"none"`` times ``grad_rows`` (per row, of the logits' dtype; zero-length
otherwise).  ``softmax_cross_entropy_with_grad`` writes the gradient of the
loss (of its sum for ``"none"``); its ``dlogits`` may be ``logits`` itself,
the same array object, and is then overwritten in place.

Linear: ``y = relu(x @ weight.T + bias)`` (ReLU when ``relu``).  The
backward reads ``y`` only when ``relu`` (its sign is the mask), writes
``dx`` unless it is ``(0, 0)`` and ``dbias`` unless it is ``(0,)``.

Optimizer steps: torch.optim's SGD and Adam/AdamW updates, in place over a
parameter and its state seen as 1-D arrays of P elements (the API flattens
them; ``momentum_buffer`` is zero-length when momentum is 0).  ``step`` is
the step count after this step (>= 1); ``decoupled=True`` is AdamW's decay.
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
