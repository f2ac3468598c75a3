"""The digits MLP as a search objective: what ``python -m fastnn tune digits`` tunes.

The model and data are those of ``python -m fastnn train digits``
(``fastnn/examples/digits.py``): scikit-learn's 8x8 digits, the seeded,
stratified 80/20 train/test split standardized with the training part's
statistics, and the MLP 64 -> Linear(h) [-> BatchNorm] -> ReLU -> Linear(h)
[-> BatchNorm] -> ReLU -> Linear(10) trained with softmax cross-entropy and
Adam by ``fastnn.fit``.  A search must not look at the test images, so the
training part is split once more, stratified, into 75% to fit and 25% to
score a trial on (``SPLIT_SEED`` fixes all three parts):

    fit          1077 images   every trial trains on these
    validation    360 images   a trial's score: accuracy after its last epoch
    test          360 images   only the best configuration, retrained on
                               fit + validation (``retrain``), sees them

``train_digits(params, budget=None)`` is an ordinary module-level function,
so worker processes and Dask workers import it by name.  ``params`` holds
``lr``, ``beta1`` (Adam's first-moment coefficient; beta2 stays 0.999),
``hidden``, ``batch_size``, ``batchnorm`` and ``epochs``; optional
``seed`` (initial weights and batch order, default 0), ``backend``
(default: fastnn's current one) and ``threads`` (kernel threads during the
trial, default 1, restored after it).  ``budget``, given by successive halving,
is the number of epochs and replaces ``params["epochs"]``.  The weights and
batches are fixed by the seed, so a trial's score depends on its
configuration alone and is the same wherever it runs.  A run whose loss
overflows raises ``FloatingPointError`` in ``fit``: the search records that
trial as failed (large learning rates without BatchNorm do this).

Why one kernel thread by default: the matrices are small (at most
256 x 256 weights, batches of 32-256), too small for a second thread to
pay for its wake-ups, and a search gets its parallelism from running trials
side by side.  On the 2-core machine of the measurements, with the other
core busy, a trial at 2 threads took 5.1 s where it took 0.34 s at one.
With one thread, serial and parallel searches also run the same kernels.

``SPACE`` is the default search space; at its sizes one trial takes
0.05-1 s on one core (20 epochs).  Tests: ``tests/test_tune_digits.py``.
"""

import functools

import numpy as np

from .space import choice, integer, loguniform, one_minus_loguniform

__all__ = ["SPACE", "EPOCHS", "train_digits", "retrain", "data"]

SPLIT_SEED = 0
EPOCHS = 20

SPACE = {
    "lr": loguniform(1e-4, 1),
    "beta1": one_minus_loguniform(0.8, 0.999),
    "hidden": integer(16, 256, log=True),
    "batch_size": choice([32, 64, 128, 256]),
    "batchnorm": choice([True, False]),
    "epochs": EPOCHS,
}


_PARTS = ("fit", "validation", "train", "test")


@functools.lru_cache(maxsize=4)
def data(seed=SPLIT_SEED):
    """``{"fit": (x, y), "validation": (x, y), "train": (x, y), "test": (x, y)}``.

    ``train`` is fit + validation (the example's whole training part).
    Loaded once per process; the arrays are shared, so they are read-only.
    Built with scikit-learn (which ships the images) and kept in a cache
    file (``cache_path``), so that a fresh worker process reads the split in
    milliseconds instead of importing scikit-learn, which took 1.2 s of the
    2.5 s a worker needed before its first trial.
    """
    path = cache_path(seed)
    parts = _read_cache(path) if path else None
    if parts is None:
        parts = _split(seed)
        if path:
            _write_cache(path, parts)
    out = {}
    for name in _PARTS:
        x, y = (np.ascontiguousarray(a) for a in parts[name])
        x.flags.writeable = False
        y.flags.writeable = False
        out[name] = (x, y)
    return out


def _split(seed):
    from sklearn.model_selection import train_test_split

    from ..examples import digits
    x_train, y_train, x_test, y_test = digits.load_digits(seed)
    x_fit, x_val, y_fit, y_val = train_test_split(
        x_train, y_train, test_size=0.25, stratify=y_train, random_state=seed)
    return {"fit": (x_fit, y_fit), "validation": (x_val, y_val),
            "train": (x_train, y_train), "test": (x_test, y_test)}


def cache_path(seed=SPLIT_SEED):
    """Where the split of ``seed`` is cached, or None (no scikit-learn, no cache directory).

    The name holds a hash of what makes the split -- this module's and the
    example's source, scikit-learn's version, the seed -- so a change to any
    of them reads a new file, never a stale one.  The directory is
    ``$FASTNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastnn``, else ``~/.cache/fastnn``.
    """
    import hashlib
    import importlib.metadata
    import os

    from ..examples import digits as example
    try:
        version = importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return None
    digest = hashlib.sha256()
    for module_file in (__file__, example.__file__):
        with open(module_file, "rb") as f:
            digest.update(f.read())
    digest.update(f"{version} {seed}".encode())
    root = os.environ.get("FASTNN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "fastnn")
    return os.path.join(root, f"tune-digits-{digest.hexdigest()[:20]}.npz")


def _read_cache(path):
    try:
        # Our own file object: np.load leaves its own open when the zip is torn.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as saved:
            return {name: (saved[f"{name}_x"], saved[f"{name}_y"]) for name in _PARTS}
    except Exception:           # absent, torn or foreign: build the split again
        return None


def _write_cache(path, parts):
    import os
    import tempfile
    arrays = {f"{name}_{axis}": array for name in _PARTS
              for axis, array in zip("xy", parts[name])}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as f:
                np.savez(f, **arrays)
            os.replace(temporary, path)     # readers see the whole file or none
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError:             # a read-only home: the split is built each time
        pass


def _train(params, epochs, train, evaluate):
    import fastnn
    from fastnn import nn, optim

    from ..examples import digits
    seed = int(params.get("seed", 0))
    backend = params.get("backend")
    threads = params.get("threads", 1)
    x, y = train
    previous = fastnn.get_num_threads()
    if threads != previous:
        fastnn.set_num_threads(threads)
    try:
        with fastnn.use_backend(backend) if backend else _nothing():
            model = digits.build_model(bool(params["batchnorm"]),
                                       hidden=int(params["hidden"]), seed=seed)
            optimizer = optim.Adam(model.parameters(), lr=float(params["lr"]),
                                   betas=(float(params["beta1"]), 0.999))
            return fastnn.fit(model, nn.SoftmaxCrossEntropy(), optimizer, x, y,
                              epochs=epochs, batch_size=int(params["batch_size"]),
                              validation=evaluate, seed=seed, progress=False)
    finally:
        if threads != previous:
            fastnn.set_num_threads(previous)


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _epochs(params, budget):
    epochs = params.get("epochs", EPOCHS) if budget is None else budget
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs: expected a positive whole number, got {epochs!r}")
    return int(epochs)


def train_digits(params, budget=None):
    """Validation accuracy of the digits MLP trained with ``params``; see the module header.

    Returns ``{"score": validation accuracy, "loss": last epoch's training loss}``.
    """
    epochs = _epochs(params, budget)
    parts = data(SPLIT_SEED)
    history = _train(params, epochs, parts["fit"], parts["validation"])
    return {"score": float(history.val_accuracy[-1]), "loss": float(history.loss[-1])}


def retrain(params, epochs=None):
    """Train ``params`` on the whole training part; ``(test accuracy, History)``."""
    epochs = _epochs(params, epochs)
    parts = data(SPLIT_SEED)
    history = _train(params, epochs, parts["train"], parts["test"])
    return float(history.val_accuracy[-1]), history
