"""The public Linear-layer functions: validation and dispatch."""

from .. import _registry
from .. import _validate as v

ACTIVATIONS = (None, "relu")


def _linear_args(x, weight):
    x = v.float_array("x", x)
    v.check_ndim("x", x, 2, "(N, in_features)")
    v.check_not_empty("x", x)
    weight = v.float_array("weight", weight, x.dtype)
    v.check_ndim("weight", weight, 2, "(out_features, in_features)")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight: expected shape ({weight.shape[0]}, {x.shape[1]}) "
                         f"to match x's {x.shape[1]} input features, got {weight.shape}")
    v.check_not_empty("weight", weight)
    return x, weight


def linear_forward(x, weight, bias=None, *, activation=None, backend=None):
    """``activation(x @ weight.T + bias)``, as ``torch.nn.functional.linear``.

    ``x`` is ``(N, K)``, ``weight`` is ``(M, K)`` (one row per output
    feature), ``bias`` is ``(M,)`` or None; ``activation`` is None or
    ``"relu"``.  Returns ``y`` of shape ``(N, M)``.
    """
    x, weight = _linear_args(x, weight)
    M = weight.shape[0]
    bias = v.optional_float_array("bias", bias, x.dtype, (M,))
    activation = v.choice("activation", activation, ACTIVATIONS)
    return _registry.kernel("linear_forward", backend)(x, weight, bias, activation)


def linear_backward(dy, x, weight, *, y=None, activation=None, has_bias=True,
                    need_dx=True, backend=None):
    """Gradients of ``linear_forward``: ``(dx, dweight, dbias)``.

    ``dy`` is ``(N, M)``.  With ``activation="relu"`` the forward output
    ``y`` is required: ``dy`` flows only where ``y > 0``.  ``dbias`` is None
    when ``has_bias=False`` and ``dx`` is None when ``need_dx=False``.
    """
    x, weight = _linear_args(x, weight)
    N, M = x.shape[0], weight.shape[0]
    dy = v.float_array("dy", dy, x.dtype)
    v.check_shape("dy", dy, (N, M))
    activation = v.choice("activation", activation, ACTIVATIONS)
    if activation == "relu":
        if y is None:
            raise ValueError("y: expected the forward output (needed by "
                             "activation='relu'), got None")
        y = v.float_array("y", y, x.dtype)
        v.check_shape("y", y, (N, M))
    else:
        y = None
    has_bias = v.flag("has_bias", has_bias)
    need_dx = v.flag("need_dx", need_dx)
    return _registry.kernel("linear_backward", backend)(
        dy, x, weight, y, activation, has_bias, need_dx)
