"""The digits example: ``python -m fastnn train digits``.

- it reaches 97% test accuracy on every backend, seeded and reproducible;
- the data split is stratified 80/20 and standardized with the training part;
- the command line runs, with the BatchNorm comparison, the PyTorch and
  scikit-learn comparisons (when installed) and the learning-curve plot;
- without scikit-learn it says what to install.
No time is asserted: the speed figures are the example's own output.
"""

import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fastnn.__main__ import main as fastnn_main  # noqa: E402
from fastnn.examples import cli, digits  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return digits.load_digits(seed=0)


def test_split_is_stratified_and_standardized(data):
    x_train, y_train, x_test, y_test = data
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert x_train.dtype == np.float32 and x_train.flags.c_contiguous
    train_share = np.bincount(y_train) / len(y_train)
    test_share = np.bincount(y_test) / len(y_test)
    assert np.abs(train_share - test_share).max() < 0.01
    used = x_train.std(axis=0) > 0
    np.testing.assert_allclose(x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0)[used], 1, rtol=1e-4)


def test_reaches_97_percent_reproducibly(data, backend):
    _, first = digits.train_fastnn(data, epochs=8, backend=backend, warm=False)
    assert max(first.val_accuracy) >= digits.TARGET_ACCURACY
    assert first.val_accuracy[-1] >= digits.TARGET_ACCURACY
    _, second = digits.train_fastnn(data, epochs=2, backend=backend, warm=False)
    assert second.loss == first.loss[:2], "same seed, same training"


def test_model_shapes():
    with_bn = digits.build_model()
    assert digits.describe(with_bn) == ("64 -> Linear(256, no bias) -> BatchNorm -> ReLU -> "
                                        "Linear(256, no bias) -> BatchNorm -> ReLU -> Linear(10)")
    assert digits.describe(digits.build_model(batchnorm=False)) == (
        "64 -> Linear(256) -> ReLU -> Linear(256) -> ReLU -> Linear(10)")


def test_command_line(tmp_path, capsys):
    plot = tmp_path / "curves.png"
    argv = ["train", "digits", "--epochs", "2", "--backend", "numba", "--plot", str(plot),
            "--compare-batchnorm", "--compare-sklearn"]
    if _has_torch():
        argv.append("--compare-torch")
    assert fastnn_main(argv) == 0
    out = capsys.readouterr().out
    assert "fastnn, backend numba" in out and "final test accuracy" in out
    assert "with and without BatchNorm" in out
    for lr in (1e-3, 1e-2, 1e-1, 1.0):
        assert f"\n{lr:8g}  " in out, f"no BatchNorm comparison row for lr {lr}"
    assert "MLPClassifier" in out
    if _has_torch():
        assert "torch Adam fused" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_command_line_without_batchnorm(capsys):
    assert cli.main(["digits", "--epochs", "1", "--backend", "numpy", "--no-batchnorm"]) == 0
    assert "Linear(256) -> ReLU" in capsys.readouterr().out


def test_command_line_without_scikit_learn(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert cli.main(["digits", "--epochs", "1"]) == 2
    assert "fastnn[examples]" in capsys.readouterr().err


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
