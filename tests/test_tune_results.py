"""SearchResult: the table, the rows, save and load in the journal format, the plot, the progress bar."""

import json
import sys

import pytest

from fastnn import tune
from fastnn.tune import synthetic
from fastnn.tune.results import JOURNAL_FORMAT, SearchResult

SPACE = {"lr": tune.loguniform(1e-6, 1), "beta": tune.one_minus_loguniform(0.5, 0.9999),
         "x": tune.uniform(-1, 1), "width": tune.integer(8, 256, log=True),
         "act": tune.choice(["relu", "tanh"]), "epochs": 3}


def outcomes(result):
    return [(t.number, t.params, t.score, t.metrics, t.status, t.error, t.round, t.config,
             t.budget) for t in result.trials]


@pytest.fixture(scope="module")
def searches():
    return {
        "random": tune.random_search(synthetic.bowl, SPACE, 10, seed=1, progress=False),
        "c2f": tune.coarse_to_fine(synthetic.bowl, SPACE, rounds=3, trials_per_round=6, seed=1,
                                   progress=False),
        "halving": tune.successive_halving(synthetic.bowl_at_budget, SPACE, 9, min_budget=1,
                                           max_budget=9, seed=1, progress=False),
        "failures": tune.random_search(synthetic.misbehave,
                                       {"x": tune.uniform(0, 1),
                                        "how": tune.choice(["ok", "raise", "nan"])},
                                       8, seed=2, progress=False),
    }


@pytest.mark.parametrize("name", ["random", "c2f", "halving", "failures"])
def test_save_and_load_give_back_the_same_result(tmp_path, searches, name):
    result = searches[name]
    path = tmp_path / f"{name}.jsonl"
    result.save(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "search" and lines[0]["format"] == JOURNAL_FORMAT
    assert {line["type"] for line in lines[1:]} <= {"round", "trial"}
    back = SearchResult.load(path)
    assert back.kind == result.kind and back.settings == json.loads(json.dumps(result.settings))
    assert outcomes(back) == outcomes(result)
    assert [t.seconds for t in back.trials] == [t.seconds for t in result.trials]
    assert back.spaces == result.spaces
    assert back.best == result.best
    assert back.table() == result.table()


def test_table_is_sorted_best_first_with_failures_last(searches):
    result = searches["failures"]
    assert 0 < len(result.finished()) < len(result.trials)
    lines = result.table().splitlines()
    header = lines[0].split()
    assert header[:3] == ["rank", "number", "score"] and {"x", "how", "twice"} <= set(header)
    body = lines[2:]
    scores = [float(line.split()[2]) for line in body if not line.split()[0] == "-"]
    assert scores == sorted(scores, reverse=True) and len(scores) == len(result.finished())
    assert all("failed:" in line for line in body[len(scores):])
    assert len(body) == len(result.trials)
    assert len(result.table(limit=2).splitlines()) == 2 + 2 + 1
    with pytest.raises(ValueError, match="^limit:"):
        result.table(limit=0)


def test_halving_table_and_best(searches):
    result = searches["halving"]
    header = result.table().splitlines()[0].split()
    assert header[:5] == ["rank", "number", "config", "budget", "score"]
    assert header.count("budget") == 1
    assert result.best.budget == 9
    # A rung-0 score may be higher than the final one, but best is from the last rung.
    assert result.best.round == max(t.round for t in result.trials)


def test_load_rejects_what_is_not_a_journal(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="^path:"):
        SearchResult.load(path)
    path.write_text("not json\n{}\n")
    with pytest.raises(ValueError, match="^journal: line 1"):
        SearchResult.load(path)


def test_plot_writes_a_png(tmp_path, searches):
    pytest.importorskip("matplotlib")
    for name, result in searches.items():
        path = tmp_path / f"{name}.png"
        assert result.plot(path) == path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_uses_log_axes_for_log_scaled_parameters(tmp_path, searches, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    searches["random"].plot(tmp_path / "axes.png")
    axes = figures[0].axes
    scales = {ax.get_xlabel().split()[0]: ax.get_xscale() for ax in axes}
    assert scales == {"lr": "log", "1": "log", "x": "linear", "width": "log", "act": "linear"}
    beta_axes = next(ax for ax in axes if ax.get_xlabel().startswith("1 - beta"))
    left, right = beta_axes.get_xlim()
    assert left > right            # reversed: beta grows to the right


def test_plot_without_matplotlib_says_what_to_install(tmp_path, searches, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match="^plot: Matplotlib is needed.*pip install matplotlib"):
        searches["random"].plot(tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_progress_bar_shows_the_best_score_so_far(capsys):
    result = tune.random_search(synthetic.bowl, SPACE, 5, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "random search" in err and "5/5" in err and f"best={result.best.score:.6g}" in err
    tune.random_search(synthetic.bowl, SPACE, 5, seed=1, progress=False)
    assert capsys.readouterr().err == ""
