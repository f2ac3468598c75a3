"""Handwritten digits with a batch-normalized MLP: fastnn's layers, Adam and ``fit`` on real data.

The data are scikit-learn's 8x8 digits (1797 images, 64 features, 10
classes, shipped inside scikit-learn): a seeded, stratified 80/20 split,
features standardized with the training part's mean and spread.  The
model is 64 -> Linear(256, no bias) -> BatchNorm -> ReLU -> Linear(256, no
bias) -> BatchNorm -> ReLU -> Linear(10), softmax cross-entropy, Adam, batch
64; without BatchNorm the Linears keep their biases.

The comparisons run the same thing elsewhere, one after the other in one
command: PyTorch CPU (the same initial weights through ``state_dict``, the
same batches in the same order, the same thread count; its default Adam and
``fused=True``) and scikit-learn's ``MLPClassifier`` (256, 256).  PyTorch
trains in a child process that never loads fastnn's Numba kernels: the two
share one OpenMP runtime when loaded together, and whichever loads first
sets its wait policy for both (fastnn's threads sleep between calls,
PyTorch's spin), which measured PyTorch 2-6x slower here than alone.  Times are
training passes only (the per-epoch evaluation is not counted, in either
library), after a warm-up epoch of a throwaway model that loads the JIT
kernels and the BLAS threads.

Used by ``python -m fastnn train digits`` (``fastnn/examples/cli.py``).
Test: tests/test_examples.py.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np

import fastnn
from fastnn import nn, optim

HIDDEN = 256
BATCH = 64
LEARNING_RATE = 1e-3
TARGET_ACCURACY = 0.97

# The user's own OpenMP wait policy, read before fastnn's numba backend sets
# its default (PASSIVE) in this process's environment: PyTorch's child gets
# the user's setting or none, never fastnn's.
_USER_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def load_digits(seed=0, dtype=np.float32):
    """``(x_train, y_train, x_test, y_test)``: stratified 80/20, standardized."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise RuntimeError("the digits example needs scikit-learn, which ships the data: "
                           "pip install 'fastnn[examples]'") from exc
    x, y = sklearn_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed)
    mean = x_train.mean(axis=0)
    spread = x_train.std(axis=0)
    spread[spread == 0] = 1.0           # pixels that are blank in every training image
    scale = lambda a: np.ascontiguousarray(((a - mean) / spread).astype(dtype))  # noqa: E731
    return scale(x_train), y_train.astype(np.int64), scale(x_test), y_test.astype(np.int64)


def build_model(batchnorm=True, hidden=HIDDEN, dtype=np.float32, seed=0):
    """The example's MLP, initialized from ``seed``."""
    rng = np.random.default_rng(seed)
    layers, width = [], 64
    for _ in range(2):
        layers.append(nn.Linear(width, hidden, bias=not batchnorm, dtype=dtype, seed=rng))
        if batchnorm:
            layers.append(nn.BatchNorm(hidden, dtype=dtype))
        layers.append(nn.ReLU())
        width = hidden
    layers.append(nn.Linear(width, 10, dtype=dtype, seed=rng))
    return nn.Sequential(*layers)


def describe(model):
    parts = ["64"]
    for layer in model:
        if isinstance(layer, nn.Linear):
            parts.append(f"Linear({layer.out_features}{'' if layer.bias is not None else ', no bias'})")
        else:
            parts.append(type(layer).__name__)
    return " -> ".join(parts)


def first_reaching(history_accuracy, seconds, target):
    """``(epoch, cumulative seconds)`` of the first epoch at ``target`` accuracy, or None."""
    elapsed = 0.0
    for epoch, (accuracy, spent) in enumerate(zip(history_accuracy, seconds), 1):
        elapsed += spent
        if accuracy >= target:
            return epoch, elapsed
    return None


def train_fastnn(data, *, epochs, lr=LEARNING_RATE, batchnorm=True, seed=0, backend=None,
                 progress=False, warm=True):
    """Train with ``fastnn.fit``; returns ``(model, History)``."""
    x_train, y_train, x_test, y_test = data
    context = fastnn.use_backend(backend) if backend else _nothing()
    with context:
        if warm:
            spare = build_model(batchnorm, seed=seed + 1)
            fastnn.fit(spare, nn.SoftmaxCrossEntropy(), optim.Adam(spare.parameters(), lr=lr),
                       x_train, y_train, epochs=1, batch_size=BATCH,
                       validation=(x_test, y_test), seed=seed, progress=False)
        model = build_model(batchnorm, seed=seed)
        history = fastnn.fit(model, nn.SoftmaxCrossEntropy(),
                             optim.Adam(model.parameters(), lr=lr), x_train, y_train,
                             epochs=epochs, batch_size=BATCH, validation=(x_test, y_test),
                             seed=seed, progress=progress)
    return model, history


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def torch_twin(model):
    """The same network in torch.nn, with ``model``'s current weights."""
    import torch
    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features,
                                          bias=layer.bias is not None))
        elif isinstance(layer, nn.BatchNorm):
            layers.append(torch.nn.BatchNorm1d(layer.num_features, eps=layer.eps,
                                               momentum=layer.momentum))
        else:
            layers.append(torch.nn.ReLU())
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(np.array(val))
                          for k, val in model.state_dict().items()})
    return twin


def train_torch(data, *, epochs, lr=LEARNING_RATE, batchnorm=True, seed=0, fused=False):
    """The same model, initial weights, batches and schedule in PyTorch.

    Returns per-epoch ``(seconds, test accuracy, training loss)`` lists.
    """
    import torch
    torch.set_num_threads(fastnn.get_num_threads())
    x_train, y_train, x_test, y_test = data
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    xv, yv = torch.from_numpy(x_test), torch.from_numpy(y_test)
    n = len(x_train)

    def run(model, epochs):
        optimizer = torch.optim.Adam(model.parameters(), lr=lr,
                                     **({"fused": True} if fused else {}))
        seconds, accuracy, losses = [], [], []
        for epoch in range(1, epochs + 1):
            order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
            model.train()
            started = time.perf_counter()
            total = 0.0
            for start in range(0, n, BATCH):
                index = order[start:start + BATCH]
                xb, yb = xt[index], yt[index]
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            seconds.append(time.perf_counter() - started)
            losses.append(total / n)
            model.eval()
            with torch.no_grad():
                accuracy.append(float((model(xv).argmax(1) == yv).double().mean()))
        return seconds, accuracy, losses

    run(torch_twin(build_model(batchnorm, seed=seed + 1)), 1)       # warm-up
    return run(torch_twin(build_model(batchnorm, seed=seed)), epochs)


def train_torch_in_child(*, epochs, lr=LEARNING_RATE, batchnorm=True, seed=0, fused=False):
    """``train_torch`` in a fresh interpreter (PyTorch with its own OpenMP
    settings, no fastnn backend loaded); same return value."""
    command = [sys.executable, "-m", "fastnn.examples.digits", json.dumps(dict(
        epochs=epochs, lr=lr, batchnorm=batchnorm, seed=seed, fused=fused,
        threads=fastnn.get_num_threads()))]
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if _USER_WAIT_POLICY is not None:
        environment["OMP_WAIT_POLICY"] = _USER_WAIT_POLICY
    run = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    seconds, accuracy, losses = json.loads(run.stdout.strip().splitlines()[-1])
    return seconds, accuracy, losses


def train_sklearn(data, *, seed=0):
    """scikit-learn's MLPClassifier (256, 256) with its defaults (Adam, early
    convergence check); returns ``(seconds, test accuracy, iterations)``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    x_train, y_train, x_test, y_test = data
    classifier = MLPClassifier(hidden_layer_sizes=(HIDDEN, HIDDEN), random_state=seed)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(x_train, y_train)
    seconds = time.perf_counter() - started
    return seconds, float(classifier.score(x_test, y_test)), int(classifier.n_iter_)


def compare_batchnorm(data, *, epochs, seed=0, rates=(1e-3, 1e-2, 1e-1, 1.0), target=0.95):
    """``[(lr, with-BN (final accuracy, epochs to target), without-BN (...))]``;
    a run whose loss overflowed has final accuracy nan."""
    rows = []
    for lr in rates:
        row = [lr]
        for batchnorm in (True, False):
            try:
                _, history = train_fastnn(data, epochs=epochs, lr=lr, batchnorm=batchnorm,
                                          seed=seed, warm=False)
            except FloatingPointError:          # diverged: the loss overflowed
                row.append((float("nan"), None))
                continue
            reached = first_reaching(history.val_accuracy, history.seconds, target)
            row.append((history.val_accuracy[-1], None if reached is None else reached[0]))
        rows.append(tuple(row))
    return rows


if __name__ == "__main__":        # the child of train_torch_in_child
    options = json.loads(sys.argv[1])
    fastnn.set_num_threads(options.pop("threads"))
    result = train_torch(load_digits(options["seed"]), **options)
    print(json.dumps(result))
