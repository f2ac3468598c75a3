"""Random search and coarse to fine: what they sample, what they return, how they narrow."""

import math

import numpy as np
import pytest

from fastnn import tune
from fastnn.tune import synthetic
from fastnn.tune.results import Trial
from fastnn.tune.space import validate_space

BOWL_SPACE = {"lr": tune.loguniform(1e-6, 1), "beta": tune.one_minus_loguniform(0.5, 0.9999),
              "x": tune.uniform(-1, 1)}


def test_random_search_records_every_trial_and_the_best():
    space = dict(BOWL_SPACE, epochs=3)
    result = tune.random_search(synthetic.bowl, space, 30, seed=4, progress=False)
    assert [t.number for t in result.trials] == list(range(30))
    assert all(t.ok and t.error is None and t.seconds >= 0 and t.params["epochs"] == 3
               for t in result.trials)
    assert all(t.score == synthetic.bowl(t.params) for t in result.trials)
    assert result.best.score == max(t.score for t in result.trials)
    assert [t.score for t in result.sorted_trials()] == sorted((t.score for t in result.trials),
                                                               reverse=True)
    assert not result.interrupted and result.spaces == [validate_space(space)]
    assert result.trials[0].params == tune.sample_params(validate_space(space), 4, 0, 0)


def test_mode_min_minimizes():
    space = {"x": tune.uniform(-1, 1)}
    low = tune.random_search(synthetic.sleepy, dict(space, sleep=0), 10, mode="min",
                             progress=False)
    assert low.best.score == min(t.score for t in low.trials)
    assert low.sorted_trials()[0] is low.best


def test_metrics_are_kept_as_plain_data():
    result = tune.random_search(synthetic.misbehave, {"x": tune.uniform(0, 1), "how": "ok"}, 3,
                                progress=False)
    trial = result.trials[0]
    assert trial.score == trial.params["x"]
    assert trial.metrics == {"twice": pytest.approx(2 * trial.params["x"], rel=1e-6),
                             "curve": [0, 1, 2]}
    assert type(trial.metrics["twice"]) is float


def test_shrink_space_narrows_in_the_space_each_parameter_is_sampled_in():
    space = validate_space({"lr": tune.loguniform(1e-6, 1),
                            "beta": tune.one_minus_loguniform(0.5, 0.9999),
                            "x": tune.uniform(-1, 1), "k": tune.integer(1, 1024, log=True),
                            "act": tune.choice(["relu", "tanh"]), "epochs": 4})
    rows = [(1e-5, 0.9, 0.0, 4, 2.0), (1e-4, 0.99, 0.5, 16, 1.0),
            (1e-2, 0.6, -0.9, 512, 0.0), (1e-1, 0.7, 0.9, 1024, -1.0)]
    trials = [Trial(number=i, params={"lr": lr, "beta": b, "x": x, "k": k, "act": "relu",
                                      "epochs": 4}, score=s)
              for i, (lr, b, x, k, s) in enumerate(rows)]
    narrowed = tune.shrink_space(space, trials, keep=0.5, mode="max")
    # Best two: lr 1e-5 and 1e-4, a decade apart in log10; the span of two
    # points is widened by one span on each side: [1e-6, 1e-3].
    assert narrowed["lr"] == tune.loguniform(1e-6, 1e-3)
    assert math.isclose(narrowed["lr"].high, 1e-3)
    # 1 - beta: 0.1 and 0.01, widened to [1e-3, 1], clipped to the old range.
    assert narrowed["beta"].kind == "one_minus_loguniform"
    assert math.isclose(narrowed["beta"].high, 0.999) and narrowed["beta"].low == 0.5
    # x linear: [0, 0.5] widened by 0.5 each side.
    assert narrowed["x"] == tune.uniform(-0.5, 1.0)
    # k log2 4 and 16 (two octaves): [1, 64], integers.
    assert (narrowed["k"].low, narrowed["k"].high, narrowed["k"].log) == (1, 64, True)
    assert narrowed["act"] == space["act"] and narrowed["epochs"] == 4
    # mode="min" keeps the other end.
    assert tune.shrink_space(space, trials, 0.5, "min")["x"] == tune.uniform(-1.0, 1.0)
    # Failed trials do not count; fewer than two finished keep the space.
    failed = [Trial(number=9, params=trials[0].params, status="failed", error="boom")]
    assert tune.shrink_space(space, trials[:1] + failed, 0.5, "max") == space


def test_coarse_to_fine_rounds_sample_the_narrowed_spaces():
    result = tune.coarse_to_fine(synthetic.bowl, dict(BOWL_SPACE, tag="c2f"), rounds=3,
                                 trials_per_round=12, keep=0.25, seed=2, progress=False)
    assert len(result.trials) == 36 and len(result.spaces) == 3
    assert [t.round for t in result.trials] == [0] * 12 + [1] * 12 + [2] * 12
    for r in range(3):
        space = result.spaces[r]
        for trial in result.trials[12 * r:12 * (r + 1)]:
            for name in ("lr", "beta", "x"):
                assert space[name].low <= trial.params[name] <= space[name].high
            assert trial.params["tag"] == "c2f"
    for r in (1, 2):
        previous, current = result.spaces[r - 1], result.spaces[r]
        best = sorted((t for t in result.trials if t.round == r - 1), key=lambda t: -t.score)[0]
        for name in ("lr", "beta", "x"):
            width = abs(current[name].to_unit(current[name].high) - current[name].to_unit(current[name].low))
            before = abs(previous[name].to_unit(previous[name].high) - previous[name].to_unit(previous[name].low))
            assert width <= before
            # The best trial of a round lies inside the next round's range.
            assert current[name].low <= best.params[name] <= current[name].high


def test_coarse_to_fine_finds_a_known_optimum_sooner_than_random_search():
    """Precision 0.15 (in decades of lr and of 1 - beta, and units of x) on a 6 x 3.7 x 2 box.

    A random trial lands that close with probability about 3e-4.  Over 40
    seeds, coarse to fine with 100 evaluations (5 rounds of 20) got there
    in 31 (78%), and random search with 400 evaluations in 4 (10%).  On the
    20 seeds here the thresholds (at least 12 and at most 7) are each missed
    with probability about 1% at those rates.
    """
    reached_c2f = reached_random = 0
    for seed in range(20):
        c2f = tune.coarse_to_fine(synthetic.bowl, BOWL_SPACE, rounds=5, trials_per_round=20,
                                  keep=0.25, seed=seed, progress=False)
        reached_c2f += synthetic.bowl_distance(c2f.best.params) < 0.15
        plain = tune.random_search(synthetic.bowl, BOWL_SPACE, 400, seed=seed, progress=False)
        reached_random += synthetic.bowl_distance(plain.best.params) < 0.15
    assert reached_c2f >= 12, reached_c2f
    assert reached_random <= 7, reached_random


def test_coarse_to_fine_with_one_round_is_a_random_search_of_that_size():
    one = tune.coarse_to_fine(synthetic.bowl, BOWL_SPACE, rounds=1, trials_per_round=8, seed=3,
                              progress=False)
    plain = tune.random_search(synthetic.bowl, BOWL_SPACE, 8, seed=3, progress=False)
    assert [t.params for t in one.trials] == [t.params for t in plain.trials]


@pytest.mark.parametrize("call, error, start", [
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 0), ValueError, "n_trials:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2.0), TypeError, "n_trials:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2, mode="maximize"), ValueError, "mode:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2, seed=-1), ValueError, "seed:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2, timeout=0), ValueError, "timeout:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2, progress=None), TypeError, "progress:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2, executor="threads"), ValueError, "executor:"),
    (lambda: tune.random_search(synthetic.bowl, BOWL_SPACE, 2, executor=4), TypeError, "executor:"),
    (lambda: tune.random_search("bowl", BOWL_SPACE, 2), TypeError, "objective:"),
    (lambda: tune.random_search(lambda p: 0.0, BOWL_SPACE, 2, executor="processes"),
     TypeError, "objective:"),
    (lambda: tune.coarse_to_fine(synthetic.bowl, BOWL_SPACE, keep=0), ValueError, "keep:"),
    (lambda: tune.coarse_to_fine(synthetic.bowl, BOWL_SPACE, keep=1.5), ValueError, "keep:"),
    (lambda: tune.coarse_to_fine(synthetic.bowl, BOWL_SPACE, rounds=0), ValueError, "rounds:"),
    (lambda: tune.coarse_to_fine(synthetic.bowl, BOWL_SPACE, trials_per_round=1),
     ValueError, "trials_per_round:"),
])
def test_bad_arguments_are_errors_naming_them(call, error, start):
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value).startswith(start), str(raised.value)


def test_sorting_rows_is_the_users_table():
    result = tune.random_search(synthetic.bowl, BOWL_SPACE, 12, progress=False)
    rows = result.rows()
    assert [row["number"] for row in rows] == [t.number for t in result.sorted_trials()]
    by_lr = sorted(rows, key=lambda row: row["lr"])
    assert np.all(np.diff([row["lr"] for row in by_lr]) >= 0)
    assert set(rows[0]) >= {"number", "score", "status", "lr", "beta", "x", "seconds", "error"}
