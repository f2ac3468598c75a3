"""Objectives with known answers, for the tests and the measurements of fastnn.tune.

They live in the package (not in tests/) so that worker processes and Dask
workers import them by name, as they would a user's objective module.

    bowl(params)              -> -(squared distance to a known optimum), on
                                 each parameter's own scale; maximum 0 at BOWL_OPTIMUM
    slow_bowl(params)         -> bowl's score after params["sleep"] seconds
    bowl_at_budget(p, budget) -> bowl's score, shrunk towards it as the budget grows,
                                 with the budget in the metrics
    constant(params)          -> 0.0 at once: what the search machinery costs
    sleepy(params)            -> params["x"] after params["sleep"] seconds
    misbehave(params)         -> fails as params["how"] says: "raise", "nan", "inf",
                                 "string", "no-score", "bad-metrics", "sleep",
                                 "interrupt"; "ok" returns params["x"]
    interrupt_above(params)   -> params["x"], or KeyboardInterrupt (as Ctrl-C) when it
                                 exceeds params["limit"]
    thread_limits(params)     -> 0.0, with the thread settings of the process it ran in
    train_mlp(params)         -> test accuracy of a small MLP trained with fastnn's
                                 kernels on a synthetic 4-class problem (CPU-bound;
                                 about a second at the default sizes)
"""

import math
import os
import time

import numpy as np

BOWL_OPTIMUM = {"lr": 3e-3, "beta": 0.98, "x": 0.3}


def bowl_distance(params):
    """Distance to the optimum: decades of lr, decades of 1 - beta, units of x."""
    d_lr = math.log10(params["lr"]) - math.log10(BOWL_OPTIMUM["lr"])
    d_beta = math.log10(1 - params["beta"]) - math.log10(1 - BOWL_OPTIMUM["beta"])
    d_x = params["x"] - BOWL_OPTIMUM["x"]
    return math.sqrt(d_lr ** 2 + d_beta ** 2 + d_x ** 2)


def bowl(params):
    return -bowl_distance(params) ** 2


def slow_bowl(params):
    time.sleep(params["sleep"])
    return bowl(params)


def slow_bowl_at_budget(params, budget):
    time.sleep(params["sleep"])
    return bowl_at_budget(params, budget)


def bowl_at_budget(params, budget):
    # Longer training sharpens the estimate, but never reorders configurations:
    # the budget accounting test can then name the configurations that must
    # reach the largest budget.
    return {"score": bowl(params) * (1.0 + 1.0 / budget), "budget": budget}


def constant(params):
    return 0.0


def sleepy(params):
    time.sleep(params["sleep"])
    return params["x"]


def misbehave(params):
    how = params["how"]
    if how == "raise":
        raise RuntimeError(f"trial asked to fail (x={params['x']})")
    if how == "nan":
        return float("nan")
    if how == "inf":
        return {"score": float("inf")}
    if how == "string":
        return "0.5"
    if how == "no-score":
        return {"accuracy": 0.5}
    if how == "bad-metrics":
        return {"score": 1.0, "model": object()}
    if how == "sleep":
        time.sleep(30)
        return 0.0
    if how == "interrupt":
        raise KeyboardInterrupt
    return {"score": params["x"], "twice": np.float32(2 * params["x"]), "curve": np.arange(3)}


def interrupt_above(params):
    time.sleep(params.get("sleep", 0))
    if params["x"] > params["limit"]:
        raise KeyboardInterrupt
    return params["x"]


def thread_limits(params):
    from threadpoolctl import threadpool_info

    import fastnn
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    import numba
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    # /proc/self/environ is the environment the process was started with,
    # whatever os.environ became since: it shows what libraries saw at load.
    start_env = None
    if os.path.exists("/proc/self/environ"):
        with open("/proc/self/environ", "rb") as f:
            pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
        found = {k.decode(): v.decode() for k, v in pairs}
        start_env = {key: found.get(key) for key in keys}
    return {"score": 0.0, "env": {key: os.environ.get(key) for key in keys},
            "start_env": start_env,
            "blas_threads": blas, "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "fastnn_threads": fastnn.get_num_threads(), "pid": os.getpid()}


def _blobs(n, features, classes, seed):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 0.35
    labels = rng.integers(0, classes, n)
    x = centers[labels] + rng.standard_normal((n, features))
    return x.astype(np.float32), labels.astype(np.int64)


def train_mlp(params):
    """A 2-layer MLP (Linear -> ReLU -> Linear) trained by SGD with momentum.

    params: lr, beta (momentum), width, epochs; optional n (training
    samples, default 2048), batch (default 64), backend (default "numpy",
    so that no JIT start-up sits in the timing).  Data and initial weights
    are fixed (seed 0): the score depends on the hyperparameters alone.
    """
    backend = params.get("backend", "numpy")
    n, batch, features, classes = params.get("n", 2048), params.get("batch", 64), 32, 4
    x, y = _blobs(n + 512, features, classes, seed=0)
    x_train, y_train, x_test, y_test = x[:n], y[:n], x[n:], y[n:]
    width = int(params["width"])
    rng = np.random.default_rng(1)
    weights = [(rng.uniform(-1, 1, (width, features)) / math.sqrt(features)).astype(np.float32),
               np.zeros(width, np.float32),
               (rng.uniform(-1, 1, (classes, width)) / math.sqrt(width)).astype(np.float32),
               np.zeros(classes, np.float32)]
    velocity = [np.zeros_like(w) for w in weights]
    lr, beta = float(params["lr"]), float(params["beta"])
    # A diverging run is reported by its non-finite score (a failed trial),
    # not by NumPy's overflow warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        return _train(x_train, y_train, x_test, y_test, weights, velocity, lr, beta, n, batch,
                      int(params["epochs"]), backend)


def _train(x_train, y_train, x_test, y_test, weights, velocity, lr, beta, n, batch, epochs,
           backend):
    import fastnn
    loss = float("nan")
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(n)
        for start in range(0, n, batch):
            index = order[start:start + batch]
            xb, yb = x_train[index], y_train[index]
            w1, b1, w2, b2 = weights
            hidden = fastnn.linear_forward(xb, w1, b1, activation="relu", backend=backend)
            logits = fastnn.linear_forward(hidden, w2, b2, backend=backend)
            loss, dlogits = fastnn.softmax_cross_entropy_with_grad(logits, yb, backend=backend)
            dhidden, dw2, db2 = fastnn.linear_backward(dlogits, hidden, w2, backend=backend)
            _, dw1, db1 = fastnn.linear_backward(dhidden, xb, w1, y=hidden, activation="relu",
                                                 need_dx=False, backend=backend)
            for w, v, g in zip(weights, velocity, (dw1, db1, dw2, db2)):
                v *= beta
                v += g
                w -= lr * v
        if not math.isfinite(float(loss)):
            return {"score": float("nan"), "loss": float(loss), "epochs": epoch + 1}
    w1, b1, w2, b2 = weights
    hidden = fastnn.linear_forward(x_test, w1, b1, activation="relu", backend=backend)
    logits = fastnn.linear_forward(hidden, w2, b2, backend=backend)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y_test))
    return {"score": accuracy, "loss": float(loss)}
