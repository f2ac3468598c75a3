"""The training loop: ``fastnn.fit``, its ``History``, checkpoints and early stopping.

``fit`` trains a ``fastnn.nn`` model with a loss and an optimizer on arrays
``x`` (N, ...) and ``y`` (N,) for some epochs, one mini-batch at a time:
zero_grad, forward, loss (and its gradient, fused), backward, optimizer
step.  Per epoch it records the training loss, the validation loss and
accuracy, the seconds the training pass and the evaluation took, and the
learning rate, in a ``History``.

- Mini-batches index a permutation drawn for each epoch from
  ``numpy.random.default_rng([seed, epoch])`` into one reused batch buffer
  (no copy of the dataset per epoch; with ``shuffle=False`` they are plain
  slices).  The last, smaller batch is kept.  Drawing per epoch, not from
  one running generator, is what lets a resumed run see the batches an
  uninterrupted one would have.
- Evaluation runs in ``eval()`` mode, forward only (no gradient work), in
  batches of up to ``EVAL_BATCH`` samples.
- ``checkpoint=path`` writes the model, the optimizer, the schedule, the
  early-stopping state and the history to one ``.npz`` file after every
  epoch (replaced atomically: a crash leaves the last good one);
  ``resume=path`` continues from it up to ``epochs`` in all, optionally
  with a new learning rate (``resume_lr``), and the history carries on,
  the lr column showing the change.
- ``early_stopping`` (a patience, or an ``EarlyStopping``) stops when the
  validation loss has not improved for ``patience`` epochs and restores
  the best weights.
- A NaN or infinite loss stops training with a FloatingPointError naming
  the epoch and the batch; the checkpoint of the last finished epoch stays.

Test: tests/test_training.py.
"""

import math
import sys
import time

import numpy as np

from .nn import _state
from .nn.module import Module
from .optim import Optimizer, _Scheduler

EVAL_BATCH = 4096
CHECKPOINT_FORMAT = 1
_HISTORY_FIELDS = ("epoch", "loss", "val_loss", "val_accuracy", "seconds", "val_seconds",
                   "lr")


class History:
    """Per-epoch records of a ``fit``: lists of equal length.

    ``epoch`` (1-based), ``loss`` (training, the batch losses' mean weighted
    by batch size), ``val_loss`` and ``val_accuracy`` (nan without
    validation), ``seconds`` (the training pass), ``val_seconds`` (the
    evaluation) and ``lr`` (of the first parameter group, during the epoch).
    ``stopped_early`` and ``best_epoch`` tell what early stopping did.
    """

    def __init__(self):
        for field in _HISTORY_FIELDS:
            setattr(self, field, [])
        self.stopped_early = False
        self.best_epoch = None

    def __len__(self):
        return len(self.epoch)

    def _append(self, **values):
        for field in _HISTORY_FIELDS:
            getattr(self, field).append(values[field])

    def as_dict(self):
        return {field: list(getattr(self, field)) for field in _HISTORY_FIELDS}

    def __repr__(self):
        lines = ["epoch      loss  val_loss  val_acc   seconds        lr"]
        for e, l, vl, va, s, lr in zip(self.epoch, self.loss, self.val_loss,
                                       self.val_accuracy, self.seconds, self.lr):
            lines.append(f"{e:5d} {l:9.4f} {vl:9.4f} {va:8.4f} {s:9.3f} {lr:9.3g}")
        return "\n".join(lines)

    def plot(self, path):
        """Write the learning curves (losses, accuracy, learning rate) to a PNG.

        Needs matplotlib (``pip install 'fastnn[plot]'``); without it, a
        RuntimeError that says so.
        """
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise RuntimeError("History.plot: expected matplotlib to draw the curves, got "
                               "none installed (pip install 'fastnn[plot]')") from exc
        figure, (losses, accuracy) = plt.subplots(1, 2, figsize=(10, 4))
        losses.plot(self.epoch, self.loss, label="training loss")
        if not all(math.isnan(value) for value in self.val_loss):
            losses.plot(self.epoch, self.val_loss, label="validation loss")
        losses.set_xlabel("epoch")
        losses.set_ylabel("loss")
        losses.set_yscale("log")
        losses.legend()
        accuracy.plot(self.epoch, self.val_accuracy, color="tab:green",
                      label="validation accuracy")
        accuracy.set_xlabel("epoch")
        accuracy.set_ylabel("accuracy")
        rates = accuracy.twinx()
        rates.plot(self.epoch, self.lr, color="tab:gray", linestyle="--", label="lr")
        rates.set_ylabel("learning rate")
        accuracy.legend(loc="lower right")
        figure.tight_layout()
        figure.savefig(path, format="png")
        plt.close(figure)

    def _arrays(self):
        arrays = {f"history/{field}": np.asarray(getattr(self, field), np.float64)
                  for field in _HISTORY_FIELDS}
        arrays["history/stopped_early"] = np.asarray(self.stopped_early)
        arrays["history/best_epoch"] = np.asarray(-1 if self.best_epoch is None
                                                  else self.best_epoch)
        return arrays

    @classmethod
    def _from_arrays(cls, arrays):
        history = cls()
        for field in _HISTORY_FIELDS:
            values = arrays[f"history/{field}"].tolist()
            setattr(history, field, [int(x) for x in values] if field == "epoch" else values)
        history.stopped_early = bool(arrays["history/stopped_early"])
        best = int(arrays["history/best_epoch"])
        history.best_epoch = None if best < 0 else best
        return history


class EarlyStopping:
    """Stop when the validation loss has not fallen by more than ``min_delta``
    for ``patience`` epochs; with ``restore_best`` put back the weights of
    the best epoch."""

    def __init__(self, patience=5, min_delta=0.0, restore_best=True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience: expected a positive integer, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) \
                or not min_delta >= 0:
            raise ValueError(f"min_delta: expected a number >= 0, got {min_delta!r}")
        self.patience, self.min_delta = patience, float(min_delta)
        self.restore_best = bool(restore_best)
        self.best_loss = math.inf
        self.best_epoch = None
        self.best_state = None
        self.wait = 0

    def update(self, epoch, val_loss, model):
        """Record an epoch; True when training should stop."""
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = val_loss, epoch, 0
            self.best_state = model.state_dict()
            return False
        self.wait += 1
        return self.wait >= self.patience

    def _arrays(self):
        arrays = {"early_stopping/best_loss": np.asarray(self.best_loss),
                  "early_stopping/best_epoch": np.asarray(-1 if self.best_epoch is None
                                                          else self.best_epoch),
                  "early_stopping/wait": np.asarray(self.wait)}
        for key, value in (self.best_state or {}).items():
            arrays[f"early_stopping/best/{key}"] = value
        return arrays

    def _load_arrays(self, arrays):
        self.best_loss = float(arrays["early_stopping/best_loss"])
        best = int(arrays["early_stopping/best_epoch"])
        self.best_epoch = None if best < 0 else best
        self.wait = int(arrays["early_stopping/wait"])
        prefix = "early_stopping/best/"
        state = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        self.best_state = state or None


# ------------------------------------------------------------ checkpoints

def _encode(prefix, value, arrays):
    """Nested dicts and lists of numbers and arrays as flat npz entries."""
    if isinstance(value, dict):
        for key, item in value.items():
            _encode(f"{prefix}/{'#' if isinstance(key, int) else ''}{key}", item, arrays)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for index, item in enumerate(value):
            _encode(f"{prefix}/#{index}", item, arrays)
    elif value is not None:
        arrays[prefix] = np.asarray(value)


def _decode(arrays, prefix):
    """The nesting ``_encode`` flattened (``#``-keys back to ints, 0-d arrays
    of numbers back to Python numbers, 1-D ones to lists)."""
    root = {}
    for key, array in arrays.items():
        if not key.startswith(prefix + "/"):
            continue
        parts = key[len(prefix) + 1:].split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(int(part[1:]) if part.startswith("#") else part, {})
        leaf = parts[-1]
        leaf = int(leaf[1:]) if leaf.startswith("#") else leaf
        node[leaf] = array.item() if array.ndim == 0 else array
    return root


def _optimizer_state(arrays):
    state = _decode(arrays, "optimizer")
    groups = state.get("param_groups", {})
    param_groups = []
    for index in sorted(groups):
        group = dict(groups[index])
        group["params"] = [int(i) for i in np.asarray(group["params"]).reshape(-1)]
        param_groups.append({k: (val.tolist() if isinstance(val, np.ndarray) else val)
                             for k, val in group.items()})
    return {"state": state.get("state", {}), "param_groups": param_groups}


def save_checkpoint(path, model, optimizer, history, epoch, scheduler=None,
                    early_stopping=None, seed=0):
    """Everything ``fit`` needs to continue, in one ``.npz`` file."""
    arrays = {f"model/{key}": value for key, value in model.state_dict().items()}
    _encode("optimizer", optimizer.state_dict(), arrays)
    if scheduler is not None:
        _encode("scheduler", scheduler.state_dict(), arrays)
    if early_stopping is not None:
        arrays.update(early_stopping._arrays())
    arrays.update(history._arrays())
    arrays["fit/format"] = np.asarray(CHECKPOINT_FORMAT)
    arrays["fit/epoch"] = np.asarray(epoch)
    arrays["fit/seed"] = np.asarray(seed)
    _state.write_arrays(path, arrays)


def load_checkpoint(path, model, optimizer, scheduler=None, early_stopping=None):
    """Restore a checkpoint into these objects; returns ``(epoch, history, seed)``."""
    arrays = _state.read_arrays(path)
    if int(arrays.get("fit/format", -1)) != CHECKPOINT_FORMAT:
        raise ValueError(f"resume: expected a fastnn checkpoint (format "
                         f"{CHECKPOINT_FORMAT}), got {path!r} without one")
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    model.load_state_dict(model_state)
    optimizer.load_state_dict(_optimizer_state(arrays))
    if scheduler is not None:
        state = _decode(arrays, "scheduler")
        if not state:
            raise ValueError(f"resume: expected a schedule's state in {path!r}, got none")
        scheduler.load_state_dict({k: (val.tolist() if isinstance(val, np.ndarray) else val)
                                   for k, val in state.items()})
    if early_stopping is not None and "early_stopping/wait" in arrays:
        early_stopping._load_arrays(arrays)
    return int(arrays["fit/epoch"]), History._from_arrays(arrays), int(arrays["fit/seed"])


# ------------------------------------------------------------------- fit

def _batches(n, batch_size, shuffle, seed, epoch):
    """Index arrays (or slices, unshuffled) of the epoch's mini-batches."""
    if not shuffle:
        return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


class _BatchBuffer:
    """Reused arrays receiving ``source[index]``, one per batch length."""

    def __init__(self, source):
        self.source = source
        self.buffers = {}

    def take(self, index):
        if isinstance(index, slice):
            return self.source[index]
        buffer = self.buffers.get(len(index))
        if buffer is None:
            buffer = self.buffers[len(index)] = np.empty(
                (len(index),) + self.source.shape[1:], self.source.dtype)
        return np.take(self.source, index, axis=0, out=buffer)


def evaluate(model, criterion, x, y, batch_size=EVAL_BATCH):
    """``(mean loss, accuracy)`` of ``model`` on ``(x, y)`` in evaluation mode.

    The modes of the model and the criterion are restored afterwards.
    """
    was_training, criterion_training = model.training, criterion.training
    model.eval()
    criterion.eval()
    try:
        total_loss, correct, n = 0.0, 0, len(x)
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            logits = model(xb)
            total_loss += _batch_loss(criterion(logits, yb), criterion, len(xb))
            if np.ndim(yb) == 1:
                correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
            else:
                correct += int(np.count_nonzero(np.argmax(logits, axis=1)
                                                == np.argmax(yb, axis=1)))
        return total_loss / n, correct / n
    finally:
        model.train(was_training)
        criterion.train(criterion_training)


def _batch_loss(loss, criterion, count):
    """The batch's contribution to a sum over samples."""
    reduction = getattr(criterion, "reduction", "mean")
    if reduction == "none":
        return float(np.sum(loss))
    return float(loss) if reduction == "sum" else float(loss) * count


def _check_fit_arguments(model, optimizer, x, y, epochs, batch_size, validation, scheduler):
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a fastnn.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a fastnn.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    if scheduler is not None and not isinstance(scheduler, _Scheduler):
        raise TypeError(f"scheduler: expected a fastnn.optim schedule, got "
                        f"{type(scheduler).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not isinstance(x, np.ndarray) or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x: expected a non-empty array of samples (N, ...), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, np.ndarray) or len(y) != len(x):
        raise ValueError(f"y: expected an array of {len(x)} targets, got "
                         f"{getattr(y, 'shape', type(y).__name__)}")
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2 \
                or len(validation[0]) != len(validation[1]) or len(validation[0]) == 0:
            raise ValueError("validation: expected a pair (x_val, y_val) of equal, non-zero "
                             f"length, got {type(validation).__name__}")


def fit(model, criterion, optimizer, x, y, *, epochs, batch_size=64, validation=None,
        shuffle=True, seed=0, scheduler=None, early_stopping=None, progress=True,
        checkpoint=None, resume=None, resume_lr=None):
    """Train ``model`` on ``(x, y)``; returns the ``History``.

    ``epochs`` is the total count (a resumed run continues up to it);
    ``validation`` is ``(x_val, y_val)``, evaluated after every epoch;
    ``scheduler.step()`` runs after every epoch; ``early_stopping`` is a
    patience (int) or an ``EarlyStopping`` and needs ``validation``;
    ``progress`` draws a tqdm bar per epoch (only on a terminal);
    ``checkpoint``/``resume`` are paths (see the module's header);
    ``resume_lr`` replaces every group's learning rate after resuming.
    """
    _check_fit_arguments(model, optimizer, x, y, epochs, batch_size, validation, scheduler)
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(patience=early_stopping)
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            raise TypeError(f"early_stopping: expected a patience or an EarlyStopping, got "
                            f"{type(early_stopping).__name__}")
        if validation is None:
            raise ValueError("early_stopping: expected validation data to watch, got "
                             "validation=None")
    history, start_epoch = History(), 0
    if resume is not None:
        start_epoch, history, _ = load_checkpoint(resume, model, optimizer, scheduler,
                                                  early_stopping)
        if resume_lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = resume_lr
    elif resume_lr is not None:
        raise ValueError("resume_lr: expected a resumed run (resume=path), got resume=None")

    show = bool(progress) and sys.stderr.isatty()
    taker_x, taker_y = _BatchBuffer(x), _BatchBuffer(y)
    n = len(x)
    backward_options = {"need_input_grad": False} if _takes_need_input_grad(model) else {}
    model.train()
    criterion.train()
    for epoch in range(start_epoch + 1, epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        bar = _progress_bar(epoch, epochs, n) if show else None
        started = time.perf_counter()
        total = 0.0
        for number, index in enumerate(_batches(n, batch_size, shuffle, seed, epoch), 1):
            xb, yb = taker_x.take(index), taker_y.take(index)
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            if not math.isfinite(loss if isinstance(loss, float) else float(np.sum(loss))):
                raise FloatingPointError(
                    f"loss: expected a finite value, got {loss} at epoch {epoch}, batch "
                    f"{number}" + (f"; the checkpoint of epoch {epoch - 1} in "
                                   f"{checkpoint!r} is kept" if checkpoint else ""))
            model.backward(criterion.backward(), **backward_options)
            optimizer.step()
            total += _batch_loss(loss, criterion, len(xb))
            if bar is not None:
                seconds = time.perf_counter() - started
                bar.update(len(xb))
                bar.set_postfix(loss=f"{total / bar.n:.4f}",
                                samples_per_s=f"{bar.n / max(seconds, 1e-9):.0f}",
                                refresh=False)
        seconds = time.perf_counter() - started
        if bar is not None:
            bar.close()
        val_loss = val_accuracy = math.nan
        val_started = time.perf_counter()
        if validation is not None:
            val_loss, val_accuracy = evaluate(model, criterion, *validation)
        val_seconds = time.perf_counter() - val_started
        history._append(epoch=epoch, loss=total / n, val_loss=val_loss,
                        val_accuracy=val_accuracy, seconds=seconds, val_seconds=val_seconds,
                        lr=lr)
        if scheduler is not None:
            scheduler.step()
        stop = early_stopping is not None and early_stopping.update(epoch, val_loss, model)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, history, epoch, scheduler,
                            early_stopping, seed)
        if stop:
            history.stopped_early = True
            break
    if early_stopping is not None:
        history.best_epoch = early_stopping.best_epoch
        if early_stopping.restore_best and early_stopping.best_state is not None:
            model.load_state_dict(early_stopping.best_state)
    return history


def _takes_need_input_grad(model):
    from .nn import Linear, Sequential
    return isinstance(model, (Linear, Sequential))


def _progress_bar(epoch, epochs, n):
    from tqdm.auto import tqdm
    return tqdm(total=n, desc=f"epoch {epoch}/{epochs}", unit="sample", leave=True,
                file=sys.stderr, mininterval=0.25)
