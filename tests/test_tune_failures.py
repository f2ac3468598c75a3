"""Trials that fail, return nonsense, run too long, or are interrupted: recorded, and the search goes on."""

import concurrent.futures
import threading

import pytest

from fastnn import tune
from fastnn.tune import synthetic
from fastnn.tune.worker import run_trial

HOWS = ["ok", "raise", "nan", "inf", "string", "no-score", "bad-metrics"]
EXPECTED_ERROR = {
    "raise": "RuntimeError: trial asked to fail",
    "nan": "ValueError: objective returned a non-finite score (nan)",
    "inf": "ValueError: objective returned a non-finite score (inf)",
    "string": "TypeError: objective returned a score of type str",
    "no-score": "ValueError: objective returned a dict without a 'score' key",
    "bad-metrics": "TypeError: objective returned metrics that are not JSON data",
}


@pytest.fixture(scope="module")
def pool():
    with tune.process_pool(2) as executor:
        yield executor


def check_failures(result, n):
    assert len(result.trials) == n and not result.interrupted
    hows = {t.params["how"] for t in result.trials}
    assert hows == set(HOWS), "the seed should draw every kind of trial"
    for trial in result.trials:
        how = trial.params["how"]
        if how == "ok":
            assert trial.ok and trial.score == trial.params["x"] and trial.error is None
        else:
            assert trial.status == "failed" and trial.score is None and trial.metrics == {}
            assert trial.error.startswith(EXPECTED_ERROR[how]), trial.error
    assert result.best.params["how"] == "ok"
    assert len(result.failed()) + len(result.finished()) == n


SPACE = {"x": tune.uniform(0, 1), "how": tune.choice(HOWS)}


def test_failing_trials_are_recorded_and_the_search_goes_on():
    check_failures(tune.random_search(synthetic.misbehave, SPACE, 40, seed=0, progress=False), 40)


def test_failing_trials_in_worker_processes(pool):
    check_failures(tune.random_search(synthetic.misbehave, SPACE, 40, seed=0, executor=pool,
                                      progress=False), 40)


def test_a_search_where_every_trial_fails_has_no_best():
    result = tune.random_search(synthetic.misbehave, {"x": 0.5, "how": "raise"}, 3,
                                progress=False)
    assert result.best is None and len(result.failed()) == 3
    assert "failed: RuntimeError" in result.table()


TIMEOUT_SPACE = {"x": tune.uniform(0, 1), "how": tune.choice(["ok", "sleep"])}


def check_timeouts(result):
    slept = [t for t in result.trials if t.params["how"] == "sleep"]
    assert slept and all(t.status == "failed" for t in slept)
    assert all(t.error == "TrialTimeout: exceeded the timeout of 0.3 s" for t in slept)
    assert all(0.25 < t.seconds < 5 for t in slept)
    assert all(t.ok for t in result.trials if t.params["how"] == "ok")


def test_timeout_in_this_process():
    check_timeouts(tune.random_search(synthetic.misbehave, TIMEOUT_SPACE, 6, seed=1,
                                      timeout=0.3, progress=False))


def test_timeout_in_worker_processes(pool):
    check_timeouts(tune.random_search(synthetic.misbehave, TIMEOUT_SPACE, 6, seed=1,
                                      timeout=0.3, executor=pool, progress=False))


def test_timeout_where_signals_cannot_reach_the_trial():
    # Trials on a thread pool (as on Dask's worker threads) run in a helper
    # thread that is abandoned at the deadline.
    space = {"x": tune.uniform(0, 1), "how": "ok", "sleep": tune.choice([0.0, 2.0])}
    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        result = tune.random_search(sleep_then_misbehave, space, 4, seed=3, timeout=0.3,
                                    executor=threads, progress=False)
    for trial in result.trials:
        if trial.params["sleep"]:
            assert trial.error == "TrialTimeout: exceeded the timeout of 0.3 s"
        else:
            assert trial.ok
    assert {t.params["sleep"] for t in result.trials} == {0.0, 2.0}


def sleep_then_misbehave(params):
    synthetic.sleepy({"sleep": params["sleep"], "x": 0})
    return synthetic.misbehave(params)


def test_a_timeout_leaves_no_alarm_behind():
    import signal
    before = signal.getsignal(signal.SIGALRM)
    run_trial(synthetic.constant, {}, None, timeout=0.05)
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_keyboard_interrupt_returns_the_trials_finished_so_far():
    space = {"x": tune.uniform(0, 1), "limit": 0.8}
    result = tune.random_search(synthetic.interrupt_above, space, 40, seed=0, progress=False)
    assert result.interrupted
    first = next(i for i in range(40) if tune.sample_params(
        tune.validate_space(space), 0, 0, i)["x"] > 0.8)
    assert [t.number for t in result.trials] == list(range(first))
    assert all(t.ok for t in result.trials) and "interrupted" in repr(result)


def test_keyboard_interrupt_in_a_worker_process(pool):
    # With seed 0, trial 3 is the first with x > 0.95: trials 0 and 1 finish first.
    space = {"x": tune.uniform(0, 1), "limit": 0.95, "sleep": 0.05}
    result = tune.random_search(synthetic.interrupt_above, space, 40, seed=0, executor=pool,
                                progress=False)
    assert result.interrupted and 2 <= len(result.trials) < 40
    assert {0, 1} <= {t.number for t in result.trials}
    assert all(t.ok and t.params["x"] <= 0.95 for t in result.trials)
    # The pool is still usable for the next search.
    after = tune.random_search(synthetic.bowl, {"lr": 1e-3, "beta": 0.9, "x": tune.uniform(0, 1)},
                               4, executor=pool, progress=False)
    assert len(after.finished()) == 4


def test_keyboard_interrupt_stops_coarse_to_fine_and_halving():
    space = {"x": tune.uniform(0, 1), "limit": 0.95}
    c2f = tune.coarse_to_fine(synthetic.interrupt_above, space, rounds=3, trials_per_round=30,
                              progress=False)
    assert c2f.interrupted and len(c2f.trials) < 90

    halving = tune.successive_halving(interrupt_above_at_budget, space, 40, min_budget=1,
                                      max_budget=9, progress=False)
    assert halving.interrupted and len(halving.trials) < 40 + 13 + 4


def interrupt_above_at_budget(params, budget):
    return synthetic.interrupt_above(params)


def test_search_from_a_thread_other_than_main():
    out = {}

    def search():
        out["result"] = tune.random_search(synthetic.misbehave, TIMEOUT_SPACE, 4, seed=1,
                                           timeout=0.3, progress=False)

    thread = threading.Thread(target=search)
    thread.start()
    thread.join(20)
    check_timeouts(out["result"])
