"""The journal: each trial appended as it finishes, and a search resumed from it equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastnn import tune
from fastnn.tune import synthetic
from fastnn.tune.results import SearchResult

SPACE = {"lr": tune.loguniform(1e-6, 1), "beta": tune.one_minus_loguniform(0.5, 0.9999),
         "x": tune.uniform(-1, 1)}

SEARCHES = {
    "random": lambda objective, **kw: tune.random_search(objective, SPACE, 12, seed=3, **kw),
    "c2f": lambda objective, **kw: tune.coarse_to_fine(objective, SPACE, rounds=3,
                                                       trials_per_round=6, seed=3, **kw),
    "halving": lambda objective, **kw: tune.successive_halving(
        lambda p, b: objective(p) * (1 + 1 / b), SPACE, 9, min_budget=1, max_budget=9, seed=3, **kw),
}


def same(a, b):
    assert a.kind == b.kind and a.settings == b.settings and a.spaces == b.spaces
    assert len(a.trials) == len(b.trials)
    assert all(x.same_outcome(y) for x, y in zip(a.trials, b.trials))
    assert a.best.same_outcome(b.best)


def trial_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()
            if json.loads(line)["type"] == "trial"]


class Interrupting:
    """bowl, but Ctrl-C at call number ``at``; counts its calls."""

    def __init__(self, at=None):
        self.at, self.calls = at, 0

    def __call__(self, params):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return synthetic.bowl(params)


@pytest.mark.parametrize("kind", list(SEARCHES))
@pytest.mark.parametrize("at", [1, 5, 9])
def test_resume_after_ctrl_c_skips_finished_trials_and_equals_an_uninterrupted_run(tmp_path, kind, at):
    search = SEARCHES[kind]
    whole = search(Interrupting(), progress=False)
    journal = tmp_path / "search.jsonl"
    first = Interrupting(at)
    partial = search(first, progress=False, journal=journal)
    assert partial.interrupted and len(partial.trials) == at - 1
    assert len(trial_lines(journal)) == at - 1
    second = Interrupting()
    resumed = search(second, progress=False, journal=journal)
    assert not resumed.interrupted
    assert second.calls == len(whole.trials) - (at - 1)      # nothing ran twice
    same(resumed, whole)
    same(SearchResult.load(journal), whole)
    # Run once more: everything is in the journal, nothing runs.
    third = Interrupting()
    same(search(third, progress=False, journal=journal), whole)
    assert third.calls == 0


def test_each_trial_is_in_the_journal_when_the_next_one_starts(tmp_path):
    journal = tmp_path / "j.jsonl"

    def objective(params):
        return float(len(trial_lines(journal)))

    result = tune.random_search(objective, SPACE, 6, progress=False, journal=journal)
    assert [t.score for t in result.trials] == [0, 1, 2, 3, 4, 5]


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path):
    journal = tmp_path / "j.jsonl"
    whole = tune.random_search(synthetic.bowl, SPACE, 8, seed=1, progress=False, journal=journal)
    text = journal.read_bytes()
    last = text.rstrip(b"\n").rfind(b"\n") + 1
    journal.write_bytes(text[:last + 25])                  # the last trial, cut mid-line
    loaded = SearchResult.load(journal)
    assert len(loaded.trials) == 7
    counter = Interrupting()
    resumed = tune.random_search(counter, SPACE, 8, seed=1, progress=False, journal=journal)
    assert counter.calls == 1
    same(resumed, whole)
    for line in journal.read_text().splitlines():          # whole lines only
        json.loads(line)
    assert journal.read_bytes().endswith(b"\n")


def test_a_journal_of_another_search_is_refused_unchanged(tmp_path):
    journal = tmp_path / "j.jsonl"
    tune.random_search(synthetic.bowl, SPACE, 4, seed=1, progress=False, journal=journal)
    before = journal.read_bytes()
    with pytest.raises(ValueError, match="^journal: .* holds a different search .*seed"):
        tune.random_search(synthetic.bowl, SPACE, 4, seed=2, progress=False, journal=journal)
    with pytest.raises(ValueError, match="^journal: .* holds a different search .*coarse_to_fine"):
        tune.coarse_to_fine(synthetic.bowl, SPACE, seed=1, progress=False, journal=journal)
    other = dict(SPACE, x=tune.uniform(-2, 2))
    with pytest.raises(ValueError, match="^journal: .*different space"):
        tune.random_search(synthetic.bowl, other, 4, seed=1, progress=False, journal=journal)
    assert journal.read_bytes() == before
    (tmp_path / "foreign.jsonl").write_text('{"type": "trial"}\n')
    with pytest.raises(ValueError, match="^journal: .* does not start with"):
        tune.random_search(synthetic.bowl, SPACE, 4, progress=False,
                           journal=tmp_path / "foreign.jsonl")


KILLED_SCRIPT = textwrap.dedent("""
    import sys
    from fastnn import tune
    from fastnn.tune import synthetic
    space = {"lr": tune.loguniform(1e-6, 1), "beta": tune.one_minus_loguniform(0.5, 0.9999),
             "x": tune.uniform(-1, 1), "sleep": 0.05}
    if __name__ == "__main__":
        executor = None if sys.argv[2] == "serial" else sys.argv[2]
        tune.coarse_to_fine(synthetic.slow_bowl, space, rounds=3, trials_per_round=8, seed=7,
                            executor=executor, journal=sys.argv[1], progress=False)
""")


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_a_search_killed_mid_way_resumes_from_its_journal(tmp_path, executor):
    script = tmp_path / "search.py"
    script.write_text(KILLED_SCRIPT)
    journal = tmp_path / "killed.jsonl"
    process = subprocess.Popen([sys.executable, str(script), str(journal), executor],
                               cwd=tmp_path)
    deadline = time.monotonic() + 60
    try:
        # Kill it in round 1 (trials 8..15), with trials of round 0 and 1 on disk.
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and len([line for line in journal.read_text().splitlines()
                                         if '"type":"trial"' in line]) >= 11:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the search ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    done = len(SearchResult.load(journal).trials)
    assert 11 <= done < 24
    kill_space = dict(SPACE, sleep=0.05)
    whole = tune.coarse_to_fine(synthetic.slow_bowl, kill_space, rounds=3, trials_per_round=8,
                                seed=7, progress=False)
    calls = []

    def counted(params):
        calls.append(params)
        return synthetic.slow_bowl(dict(params, sleep=0.0))

    resumed = tune.coarse_to_fine(counted, kill_space, rounds=3, trials_per_round=8, seed=7,
                                  journal=journal, progress=False)
    assert len(calls) == 24 - done
    same(resumed, whole)
