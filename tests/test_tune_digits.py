"""``python -m fastnn tune digits``: the digits MLP tuned end to end.

- the objective trains through the public API on a fixed fit/validation/test
  split, is picklable, depends on its configuration alone, and leaves the
  caller's thread count as it found it;
- the command runs each method on few, short trials, serially, on worker
  processes and on a Dask LocalCluster, with the same trials on each;
- a journal resumes a search, running only the missing trials;
- without Matplotlib (--plot) or distributed (--executor dask) it says what to
  install, before any trial runs.
No time is asserted.
"""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

import fastnn  # noqa: E402
from fastnn.tune import cli  # noqa: E402
from fastnn.tune import digits  # noqa: E402
from fastnn.tune.results import SearchResult  # noqa: E402

# Two epochs a trial: the command's path, not the model's quality, is under test.
SHORT = ["--epochs", "2"]
GOOD = {"lr": 3e-3, "beta1": 0.9, "hidden": 64, "batch_size": 64, "batchnorm": True,
        "epochs": 20}


def run(capsys, *argv):
    code = cli.main(["digits", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_and_best(out):
    """The table and the best configuration: the lines without a wall time."""
    lines = out.splitlines()
    return lines[3:next(i for i, line in enumerate(lines) if line.startswith("retrained"))]


def outcomes(path):
    return [(t.number, t.params, t.score, t.status, t.round, t.budget)
            for t in SearchResult.load(path).trials]


def test_split_is_fixed_stratified_and_keeps_the_test_images_apart():
    parts = digits.data()
    sizes = {name: len(x) for name, (x, _) in parts.items()}
    assert sizes == {"fit": 1077, "validation": 360, "train": 1437, "test": 360}
    x_fit, y_fit = parts["fit"]
    x_val, y_val = parts["validation"]
    x_train, _ = parts["train"]
    # fit and validation partition the training part
    rows = {row.tobytes() for row in x_train}
    assert {row.tobytes() for row in x_fit} | {row.tobytes() for row in x_val} <= rows
    assert not {row.tobytes() for row in x_fit} & {row.tobytes() for row in x_val}
    assert np.abs(np.bincount(y_val, minlength=10) / 360
                  - np.bincount(y_fit, minlength=10) / 1077).max() < 0.01
    assert not x_fit.flags.writeable       # shared by every trial of a process


def test_objective_is_picklable_reproducible_and_restores_threads():
    assert pickle.loads(pickle.dumps(digits.train_digits)) is digits.train_digits
    threads = fastnn.get_num_threads()
    params = dict(GOOD, epochs=2)
    first, second = digits.train_digits(params), digits.train_digits(params)
    assert first == second and set(first) == {"score", "loss"}
    assert 0 < first["score"] <= 1
    assert fastnn.get_num_threads() == threads
    # a halving budget replaces the epochs
    assert digits.train_digits(dict(params, epochs=7), budget=2) == first


def test_a_good_configuration_retrained_reaches_97_percent():
    accuracy, history = digits.retrain(GOOD)
    assert len(history) == 20 and accuracy >= 0.97


@pytest.mark.parametrize("epochs", [0, 2.5, True])
def test_bad_epochs_are_an_error_naming_them(epochs):
    with pytest.raises(ValueError, match="^epochs: expected a positive whole number"):
        digits.train_digits(dict(GOOD, epochs=epochs))


@pytest.mark.parametrize("method,expected", [
    ("random", "random search, 4 trials"),
    ("coarse-to-fine", "coarse to fine, 2 rounds of 2 trials"),
    ("halving", "successive halving, eta 2, rungs 4 x 1 epochs, 2 x 2 epochs"),
])
def test_each_method_prints_table_best_and_test_accuracy(capsys, tmp_path, method, expected):
    plot = tmp_path / "search.png"
    code, out, _ = run(capsys, "--trials", "4", "--method", method, "--rounds", "2",
                       "--eta", "2", "--plot", str(plot), *SHORT)
    assert code == 0
    assert expected in out
    assert out.count(" ok") >= 4 and "rank" in out
    assert "best: trial" in out and "validation accuracy" in out
    assert "retrained on all 1437 training images for 2 epochs" in out
    assert "test accuracy" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_processes_give_the_serial_trials(capsys, tmp_path):
    serial, processes = tmp_path / "serial.jsonl", tmp_path / "processes.jsonl"
    for path, executor in ((serial, "serial"), (processes, "processes")):
        code, out, _ = run(capsys, "--trials", "4", "--executor", executor, "--journal",
                           str(path), "--seed", "5", *SHORT)
        assert code == 0 and f"executor {executor}" in out
    assert outcomes(serial) == outcomes(processes)
    assert len(outcomes(serial)) == 4


def test_dask_gives_the_serial_trials(capsys, tmp_path):
    pytest.importorskip("distributed")
    serial, dask = tmp_path / "serial.jsonl", tmp_path / "dask.jsonl"
    for path, executor in ((serial, "serial"), (dask, "dask")):
        code, _, _ = run(capsys, "--trials", "3", "--method", "halving", "--eta", "3",
                         "--executor", executor, "--journal", str(path), *SHORT)
        assert code == 0
    assert outcomes(serial) == outcomes(dask)


def test_journal_resume_runs_only_the_missing_trials(capsys, tmp_path, monkeypatch):
    whole, cut = tmp_path / "whole.jsonl", tmp_path / "cut.jsonl"
    assert run(capsys, "--trials", "5", "--journal", str(whole), *SHORT)[0] == 0
    lines = whole.read_text().splitlines(keepends=True)
    trials = [i for i, line in enumerate(lines) if json.loads(line)["type"] == "trial"]
    # the first two trials on disk, and a line torn by a kill
    cut.write_text("".join(lines[:trials[2]]) + lines[trials[2]][:25])
    calls = []
    original = digits.train_digits

    def counted(params, budget=None):
        calls.append(params)
        return original(params, budget)

    monkeypatch.setattr(digits, "train_digits", counted)
    code, out, _ = run(capsys, "--trials", "5", "--journal", str(cut), *SHORT)
    assert code == 0 and "5 trials" in out
    assert len(calls) == 3
    assert outcomes(cut) == outcomes(whole)
    # run again: nothing left to do, the same table
    calls.clear()
    again = run(capsys, "--trials", "5", "--journal", str(cut), *SHORT)
    assert again[0] == 0 and not calls
    assert table_and_best(again[1]) == table_and_best(out)


def test_a_journal_of_another_search_is_refused_with_a_message(capsys, tmp_path):
    journal = tmp_path / "j.jsonl"
    assert run(capsys, "--trials", "2", "--journal", str(journal), *SHORT)[0] == 0
    before = journal.read_bytes()
    code, out, err = run(capsys, "--trials", "2", "--seed", "1", "--journal", str(journal),
                         *SHORT)
    assert code == 2 and err.startswith("python -m fastnn tune digits: --journal: journal:")
    assert journal.read_bytes() == before and out == ""


def test_without_matplotlib_plot_says_what_to_install_before_any_trial(capsys, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    journal = tmp_path / "j.jsonl"
    code, out, err = run(capsys, "--trials", "2", "--plot", str(tmp_path / "p.png"),
                         "--journal", str(journal), *SHORT)
    assert code == 2 and "pip install matplotlib" in err and "--plot" in err
    assert not journal.exists() and out == ""


def test_without_distributed_dask_says_what_to_install_before_any_trial(capsys, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    journal = tmp_path / "j.jsonl"
    code, out, err = run(capsys, "--trials", "2", "--executor", "dask", "--journal",
                         str(journal), *SHORT)
    assert code == 2 and "pip install distributed" in err and "--executor dask" in err
    assert not journal.exists() and out == ""


@pytest.mark.parametrize("argv,message", [
    (["--trials", "0"], "--trials"),
    (["--method", "grid"], "--method"),
    (["--executor", "threads"], "--executor"),
    (["--epochs", "-1"], "--epochs"),
])
def test_bad_options_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        cli.main(["digits", *argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--method", "coarse-to-fine", "--trials", "3", "--rounds", "3"], "--trials"),
    (["--method", "halving", "--eta", "1"], "--eta"),
])
def test_impossible_settings_are_refused(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith(f"python -m fastnn tune digits: {message}")


def test_python_m_fastnn_tune_digits(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastnn", "tune", "digits", "--trials", "2",
                           "--epochs", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "random search, 2 trials" in done.stdout and "test accuracy" in done.stdout


def test_anchors_without_optuna_skip_its_row_with_a_message(capsys, monkeypatch):
    from fastnn.tune import measure
    row = {"wall_s": 1.0, "to_target_s": None, "best_val": 0.9, "failed": 0, "test": 0.9}
    monkeypatch.setattr(measure, "_fastnn_anchor", lambda *args: dict(row))
    monkeypatch.setattr(measure, "_sklearn_anchor", lambda *args: dict(row, version="x"))
    monkeypatch.setitem(sys.modules, "optuna", None)
    figures = measure.anchors(4)
    out = capsys.readouterr().out
    assert "Optuna RandomSampler" in out and "not measured: pip install optuna" in out
    assert "Optuna RandomSampler" not in figures and len(figures) == 3


def test_time_to_target_is_the_first_trial_reaching_it():
    from fastnn.tune.measure import _time_to
    pairs = [(0.5, 11.0), (0.98, 14.0), (None, 12.0), (0.97, 13.0)]
    assert _time_to(pairs, 0.97, 10.0) == 3.0
    assert _time_to(pairs, 0.99, 10.0) is None


def test_the_anchor_distributions_draw_within_their_ranges():
    from fastnn.tune.measure import _LogWidthPair, _OneMinusLogUniform
    rng = np.random.RandomState(0)
    betas = [_OneMinusLogUniform(0.8, 0.999).rvs(rng) for _ in range(2000)]
    widths = [_LogWidthPair(16, 256).rvs(rng) for _ in range(2000)]
    assert 0.8 <= min(betas) and max(betas) <= 0.999
    # 1 - beta log-uniform: about 870 draws in each of [0.99, 0.999] and
    # [0.9, 0.99]; their difference has a spread of about 31, so 200 is a
    # false alarm with probability below 1e-9.
    per_decade = np.histogram(np.log10(1 - np.array(betas)), [-3, -2, -1])[0]
    assert abs(per_decade[0] - per_decade[1]) < 200
    assert all(a == b and 16 <= a <= 256 for a, b in widths)


def test_the_cached_split_equals_a_fresh_one_and_a_torn_cache_is_rebuilt(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(tmp_path))
    fresh = digits._split(digits.SPLIT_SEED)
    digits.data.cache_clear()
    try:
        path = digits.cache_path()
        assert path.startswith(str(tmp_path))
        built = digits.data()                       # builds and writes the cache
        digits.data.cache_clear()
        with open(path, "r+b") as f:                # a torn file: rebuilt, not fatal
            f.truncate(100)
        rebuilt = digits.data()
        digits.data.cache_clear()
        read = digits.data()                        # from the rewritten file
        for parts in (built, rebuilt, read):
            for name, (x, y) in fresh.items():
                np.testing.assert_array_equal(parts[name][0], x)
                np.testing.assert_array_equal(parts[name][1], y)
                assert parts[name][0].dtype == x.dtype and parts[name][1].dtype == y.dtype
        assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(path)]
    finally:
        digits.data.cache_clear()
