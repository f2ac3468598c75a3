"""fastnn.fit: History, mini-batches, checkpoint/resume, early stopping, errors.

- a small problem is learned; History has one entry per epoch in every field;
- the batches are each epoch's seeded permutation, the last one smaller,
  and shuffle=False gives the dataset in order;
- evaluation runs in eval() mode and leaves the running statistics alone;
- checkpoint + resume gives the history and weights of an uninterrupted
  run (bitwise), and resume_lr shows in the history;
- early stopping stops on a stalled validation loss and restores the best
  weights;
- a non-finite loss names its epoch and batch and keeps the last checkpoint;
- History.plot writes a PNG (matplotlib installed) or says what is missing;
- bad arguments raise before training starts.
"""

import math
import sys

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim, training


def problem(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] + x[:, 2] > 0))
    return x, y


def setup(lr=1e-2, schedule=True, seed=1):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(6, 16, bias=False, seed=rng), nn.BatchNorm(16), nn.ReLU(),
                          nn.Linear(16, 3, seed=rng))
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.StepLR(optimizer, step_size=2, gamma=0.5) if schedule else None
    return model, nn.SoftmaxCrossEntropy(), optimizer, scheduler


def run(epochs, backend=None, **options):
    x, y = problem()
    model, criterion, optimizer, scheduler = setup()
    with fastnn.use_backend(backend or "auto"):
        history = fastnn.fit(model, criterion, optimizer, x, y, epochs=epochs, batch_size=32,
                             validation=(x[:80], y[:80]), scheduler=scheduler,
                             **dict(dict(progress=False), **options))
    return model, history


def test_fit_learns_and_records_every_epoch(backend):
    model, history = run(8, backend)
    assert len(history) == 8 and history.epoch == list(range(1, 9))
    for field in ("loss", "val_loss", "val_accuracy", "seconds", "val_seconds", "lr"):
        assert len(getattr(history, field)) == 8, field
    assert history.loss[-1] < 0.6 * history.loss[0]
    assert history.val_accuracy[-1] > 0.7                 # chance is below 0.5
    assert history.lr == [1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3, 1.25e-3, 1.25e-3]
    assert all(s > 0 for s in history.seconds)
    assert "epoch" in repr(history)
    assert model.training, "fit leaves the model in training mode"


def test_batches_are_seeded_permutations_with_a_short_last_batch():
    batches = training._batches(100, 32, True, 5, 3)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    joined = np.concatenate(batches)
    assert sorted(joined.tolist()) == list(range(100))
    np.testing.assert_array_equal(joined, np.random.default_rng([5, 3]).permutation(100))
    assert not np.array_equal(joined, np.concatenate(training._batches(100, 32, True, 5, 4)))
    in_order = training._batches(10, 4, False, 0, 1)
    assert in_order == [slice(0, 4), slice(4, 8), slice(8, 10)]


def test_batch_buffer_is_reused():
    x, _ = problem(50)
    taker = training._BatchBuffer(x)
    first = taker.take(np.arange(10))
    second = taker.take(np.arange(10, 20))
    assert first is second, "one buffer per batch length"
    np.testing.assert_array_equal(second, x[10:20])
    assert taker.take(slice(0, 5)).base is x


def test_fit_sees_every_sample_once_per_epoch(monkeypatch):
    seen = []
    original = nn.Sequential.forward

    def recording(self, x):
        if self.training:
            seen.append(x.copy())
        return original(self, x)

    monkeypatch.setattr(nn.Sequential, "forward", recording)
    x, y = problem(70)
    x[:, 0] = np.arange(70)             # a sample's id in its first feature
    model, criterion, optimizer, _ = setup(schedule=False)
    fastnn.fit(model, criterion, optimizer, x, y, epochs=2, batch_size=32, progress=False)
    assert [len(b) for b in seen] == [32, 32, 6, 32, 32, 6]
    for epoch_batches in (seen[:3], seen[3:]):
        assert sorted(np.concatenate(epoch_batches)[:, 0].tolist()) == list(range(70))


def test_evaluation_changes_no_running_statistics():
    x, y = problem()
    model, criterion, _, _ = setup()
    model(x[:32])
    before = model.state_dict()
    loss, accuracy = training.evaluate(model, criterion, x, y, batch_size=64)
    assert model.training and criterion.training
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    assert math.isfinite(loss) and 0 <= accuracy <= 1


def test_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path, backend):
    path = tmp_path / "run.npz"
    whole_model, whole = run(6, backend)
    run(3, backend, checkpoint=path)
    x, y = problem()
    model, criterion, optimizer, scheduler = setup(seed=99)      # other initial weights
    with fastnn.use_backend(backend):
        resumed = fastnn.fit(model, criterion, optimizer, x, y, epochs=6, batch_size=32,
                             validation=(x[:80], y[:80]), scheduler=scheduler, progress=False,
                             resume=path)
    assert resumed.epoch == whole.epoch
    assert resumed.loss == whole.loss
    assert resumed.val_loss == whole.val_loss
    assert resumed.val_accuracy == whole.val_accuracy
    assert resumed.lr == whole.lr
    for key, value in whole_model.state_dict().items():
        assert model.state_dict()[key].tobytes() == value.tobytes(), key


def test_resume_with_a_changed_learning_rate(tmp_path):
    path = tmp_path / "run.npz"
    run(2, checkpoint=path)
    x, y = problem()
    model, criterion, optimizer, _ = setup(schedule=False)
    history = fastnn.fit(model, criterion, optimizer, x, y, epochs=4, batch_size=32,
                         progress=False, resume=path, resume_lr=1e-4, checkpoint=path)
    assert history.lr == [1e-2, 1e-2, 1e-4, 1e-4]
    assert optimizer.param_groups[0]["lr"] == 1e-4
    arrays = nn.load(path)
    assert arrays["fit/epoch"] == 4
    with pytest.raises(ValueError, match=r"^resume_lr"):
        fastnn.fit(model, criterion, optimizer, x, y, epochs=1, resume_lr=1e-3, progress=False)


def test_checkpoint_holds_plain_arrays(tmp_path):
    path = tmp_path / "run.npz"
    run(1, checkpoint=path)
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
        names = set(archive.files)
    assert {"model/0.weight", "model/1.num_batches_tracked", "history/loss", "fit/epoch",
            "optimizer/state/#0/exp_avg", "optimizer/param_groups/#0/lr",
            "scheduler/last_epoch"} <= names
    x, y = problem()
    with pytest.raises(ValueError, match=r"^resume"):
        model, criterion, optimizer, _ = setup()
        bare = tmp_path / "bare.npz"
        model.save(bare)
        fastnn.fit(model, criterion, optimizer, x, y, epochs=2, progress=False, resume=bare)


def test_early_stopping_restores_the_best_weights():
    x, y = problem()
    rng = np.random.default_rng(3)
    y_val = rng.integers(0, 3, 80)          # unlearnable: the validation loss soon rises
    model, criterion, optimizer, _ = setup(lr=5e-2, schedule=False)
    best = {}
    original = training.EarlyStopping.update

    def watching(self, epoch, val_loss, model):
        stop = original(self, epoch, val_loss, model)
        if self.best_epoch == epoch:
            best["state"] = model.state_dict()
        return stop

    stopper = training.EarlyStopping(patience=2)
    stopper.update = watching.__get__(stopper)
    history = fastnn.fit(model, criterion, optimizer, x, y, epochs=40, batch_size=32,
                         validation=(x[:80], y_val), early_stopping=stopper, progress=False)
    assert history.stopped_early and len(history) < 40
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    assert len(history) == history.best_epoch + 2
    for key, value in best["state"].items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)
    with pytest.raises(ValueError, match=r"^early_stopping"):
        fastnn.fit(model, criterion, optimizer, x, y, epochs=1, early_stopping=3,
                   progress=False)


def test_non_finite_loss_names_epoch_and_batch_and_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    x, y = problem()
    model, criterion, optimizer, _ = setup(schedule=False)
    fastnn.fit(model, criterion, optimizer, x, y, epochs=1, batch_size=32, progress=False,
               checkpoint=path)
    saved = path.read_bytes()
    bad = x.copy()
    order = np.random.default_rng([0, 2]).permutation(len(x))
    bad[order[70]] = np.inf                 # in the third batch of epoch 2
    with pytest.raises(FloatingPointError, match=r"^loss: expected a finite value, got "
                                                 r"nan at epoch 2, batch 3"):
        fastnn.fit(model, criterion, optimizer, bad, y, epochs=3, batch_size=32,
                   progress=False, checkpoint=path, resume=path)
    assert path.read_bytes() == saved


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    _, history = run(3)
    path = tmp_path / "curves.png"
    history.plot(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    _, history = run(1)
    with pytest.raises(RuntimeError, match="matplotlib"):
        history.plot(tmp_path / "curves.png")


def test_progress_bar_stays_off_without_a_terminal(capsys):
    run(1, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("change, error, name", [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(x=np.ones(5, np.float32)), ValueError, "x"),
    (dict(y=np.ones(7, np.int64)), ValueError, "y"),
    (dict(validation=(np.ones((3, 6), np.float32),)), ValueError, "validation"),
    (dict(model="model"), TypeError, "model"),
    (dict(optimizer="adam"), TypeError, "optimizer"),
    (dict(scheduler="cosine"), TypeError, "scheduler"),
    (dict(early_stopping="yes"), TypeError, "early_stopping"),
])
def test_bad_fit_arguments(change, error, name):
    x, y = problem(40)
    model, criterion, optimizer, _ = setup()
    before = model.state_dict()
    arguments = dict(model=model, criterion=criterion, optimizer=optimizer, x=x, y=y,
                     epochs=1, validation=(x, y))
    arguments.update(change)
    with pytest.raises(error, match=rf"^{name}"):
        fastnn.fit(arguments.pop("model"), arguments.pop("criterion"),
                   arguments.pop("optimizer"), arguments.pop("x"), arguments.pop("y"),
                   progress=False, **arguments)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
