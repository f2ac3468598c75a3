"""Search spaces: the draws have the distributions they claim, reproducibly, and bad bounds are errors.

Statistical checks use fixed seeds, so they pass or fail the same way every
run; each is a test at false-alarm rate ALPHA = 1e-3: a correct sampler
fails it for about one seed in a thousand, a wrong one (uniform where
log-uniform was asked, a missed option, a shifted range) fails by a wide
margin at these sample sizes.  Kolmogorov-Smirnov: reject when
sqrt(n) * D > sqrt(ln(2 / ALPHA) / 2) (the asymptotic critical value).
Chi-square: reject above the 1 - ALPHA quantile (CHI2_CRITICAL, checked
against SciPy when it is installed).
"""

import json
import math

import numpy as np
import pytest

from fastnn import tune
from fastnn.tune.space import sample_params, space_from_json, space_to_json, validate_space

ALPHA = 1e-3
N = 4000
CHI2_CRITICAL = {2: 13.816, 3: 16.266, 4: 18.467, 9: 27.877}     # 0.999 quantiles


def draws(space, name, n=N, seed=0):
    space = validate_space(space)
    return np.array([sample_params(space, seed, 0, i)[name] for i in range(n)])


def ks_statistic(unit_values):
    """sqrt(n) * the Kolmogorov-Smirnov distance of values to U(0, 1)."""
    u = np.sort(unit_values)
    n = len(u)
    d = max(np.max(np.arange(1, n + 1) / n - u), np.max(u - np.arange(n) / n))
    return math.sqrt(n) * d


KS_CRITICAL = math.sqrt(math.log(2 / ALPHA) / 2)


def chi_square(counts, probabilities):
    counts = np.asarray(counts, dtype=float)
    expected = counts.sum() * np.asarray(probabilities, dtype=float)
    return float(np.sum((counts - expected) ** 2 / expected))


def test_chi_square_table_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof, value in CHI2_CRITICAL.items():
        assert stats.chi2.ppf(1 - ALPHA, dof) == pytest.approx(value, abs=2e-3)


def test_uniform_is_uniform_within_bounds():
    x = draws({"x": tune.uniform(-2, 3)}, "x")
    assert x.min() >= -2 and x.max() <= 3
    assert ks_statistic((x + 2) / 5) < KS_CRITICAL


def test_loguniform_spreads_evenly_across_decades():
    x = draws({"lr": tune.loguniform(1e-4, 1)}, "lr")
    assert x.min() >= 1e-4 and x.max() <= 1
    counts = np.histogram(np.log10(x), bins=[-4, -3, -2, -1, 0])[0]
    assert chi_square(counts, [0.25] * 4) < CHI2_CRITICAL[3]
    assert ks_statistic((np.log10(x) + 4) / 4) < KS_CRITICAL
    # A plain uniform draw would put 90% of the trials in the top decade.
    assert counts[-1] < 0.3 * N


def test_one_minus_loguniform_spreads_evenly_across_decades_of_one_minus_beta():
    beta = draws({"beta": tune.one_minus_loguniform(0.9, 0.999)}, "beta")
    assert beta.min() >= 0.9 and beta.max() <= 0.999
    t = np.log10(1 - beta)                          # in [-3, -1]
    counts = np.histogram(t, bins=[-3, -2.5, -2, -1.5, -1])[0]
    assert chi_square(counts, [0.25] * 4) < CHI2_CRITICAL[3]
    assert ks_statistic((t + 3) / 2) < KS_CRITICAL
    # As many in [0.99, 0.999] as in [0.9, 0.99].
    assert abs(np.mean(beta >= 0.99) - 0.5) < 4 * math.sqrt(0.25 / N)


def test_integers_stay_within_bounds_and_are_uniform():
    k = draws({"k": tune.integer(0, 9)}, "k")
    assert k.dtype.kind == "i" and set(k) == set(range(10))
    counts = np.bincount(k, minlength=10)
    assert chi_square(counts, [0.1] * 10) < CHI2_CRITICAL[9]


def test_log_integers_follow_their_stated_probabilities():
    k = draws({"k": tune.integer(1, 1000, log=True)}, "k")
    assert k.min() >= 1 and k.max() <= 1000
    # P(a <= k <= b) = log((b + 1) / a) / log(1001): a decade each, nearly.
    edges = [(1, 9), (10, 99), (100, 1000)]
    counts = [np.sum((k >= a) & (k <= b)) for a, b in edges]
    probabilities = [math.log((b + 1) / a) / math.log(1001) for a, b in edges]
    assert chi_square(counts, probabilities) < CHI2_CRITICAL[2]

    small = draws({"k": tune.integer(1, 4, log=True)}, "k")
    counts = np.bincount(small, minlength=5)[1:]
    probabilities = [math.log((j + 1) / j) / math.log(5) for j in range(1, 5)]
    assert chi_square(counts, probabilities) < CHI2_CRITICAL[3]


def test_every_choice_is_reachable_and_equally_likely():
    options = ["relu", 3, 2.5, True, None]
    values = draws({"c": tune.choice(options)}, "c", n=2000).tolist()
    counts = [sum(1 for v in values if v is o or (type(v) is type(o) and v == o))
              for o in options]
    assert min(counts) > 0 and sum(counts) == 2000
    assert chi_square(counts, [0.2] * 5) < CHI2_CRITICAL[4]


def test_parameters_are_drawn_independently():
    space = validate_space({"a": tune.uniform(0, 1), "b": tune.uniform(0, 1)})
    pairs = np.array([[p["a"], p["b"]] for p in
                      (sample_params(space, 0, 0, i) for i in range(N))])
    r = np.corrcoef(pairs.T)[0, 1]
    # |r| > 3.29 / sqrt(n) has probability 1e-3 for independent draws.
    assert abs(r) < 3.29 / math.sqrt(N)


def test_draws_depend_only_on_seed_stream_number_and_name():
    space = {"lr": tune.loguniform(1e-4, 1), "w": tune.integer(8, 512, log=True),
             "act": tune.choice(["relu", "tanh"]), "epochs": 5}
    first = [sample_params(validate_space(space), 7, 0, i) for i in range(20)]
    again = [sample_params(validate_space(space), 7, 0, i) for i in reversed(range(20))][::-1]
    assert first == again
    assert first != [sample_params(validate_space(space), 8, 0, i) for i in range(20)]
    assert first != [sample_params(validate_space(space), 7, 1, i) for i in range(20)]
    # Reordering the space or adding a parameter leaves the other draws alone.
    bigger = {"beta": tune.one_minus_loguniform(0.9, 0.999), "epochs": 5, "act": space["act"],
              "w": space["w"], "lr": space["lr"]}
    for i, params in enumerate(first):
        other = sample_params(validate_space(bigger), 7, 0, i)
        assert {key: other[key] for key in params} == params
    # Plain Python values, constants as given.
    assert all(type(p["lr"]) is float and type(p["w"]) is int and p["epochs"] == 5
               for p in first)


def test_spaces_round_trip_through_json():
    space = validate_space({"lr": tune.loguniform(1e-4, 1), "b": tune.one_minus_loguniform(0.9, 0.999),
                            "x": tune.uniform(-1, 1), "k": tune.integer(1, 64, log=True),
                            "c": tune.choice([True, False, None]), "const": {"a": [1, 2]}})
    text = json.dumps(space_to_json(space))
    assert space_from_json(json.loads(text)) == space


@pytest.mark.parametrize("space, error, start", [
    ({"lr": tune.loguniform(0, 1)}, ValueError, "lr:"),
    ({"lr": tune.loguniform(-1e-3, 1)}, ValueError, "lr:"),
    ({"lr": tune.loguniform(1, 1e-4)}, ValueError, "lr:"),
    ({"x": tune.uniform(1, 1)}, ValueError, "x:"),
    ({"x": tune.uniform(0, float("inf"))}, ValueError, "x:"),
    ({"x": tune.uniform("0", 1)}, TypeError, "x:"),
    ({"beta": tune.one_minus_loguniform(0.9, 1.0)}, ValueError, "beta:"),
    ({"beta": tune.one_minus_loguniform(0.0, 0.9)}, ValueError, "beta:"),
    ({"beta": tune.one_minus_loguniform(0.99, 0.9)}, ValueError, "beta:"),
    ({"width": tune.integer(5, 5)}, ValueError, "width:"),
    ({"width": tune.integer(9, 2)}, ValueError, "width:"),
    ({"width": tune.integer(0, 10, log=True)}, ValueError, "width:"),
    ({"width": tune.integer(1.5, 10)}, TypeError, "width:"),
    ({"width": tune.integer(1, 10, log="yes")}, TypeError, "width:"),
    ({"act": tune.choice([])}, ValueError, "act:"),
    ({"act": tune.choice("relu")}, TypeError, "act:"),
    ({"act": tune.choice([[1], [2]])}, TypeError, "act:"),
    ({"act": tune.choice(["a", "a"])}, ValueError, "act:"),
    ({"shape": (1, 2)}, TypeError, "shape:"),
    ({"dtype": np.float32}, TypeError, "dtype:"),
    ({}, ValueError, "space:"),
    ([("lr", 1)], TypeError, "space:"),
    ({1: tune.uniform(0, 1)}, TypeError, "space:"),
])
def test_bad_spaces_are_errors_naming_the_parameter(space, error, start):
    with pytest.raises(error) as raised:
        validate_space(space)
    assert str(raised.value).startswith(start), str(raised.value)


def test_a_search_checks_its_space_before_running_anything(tmp_path):
    calls = []
    journal = tmp_path / "j.jsonl"
    with pytest.raises(ValueError, match="^lr: loguniform needs low > 0"):
        tune.random_search(calls.append, {"lr": tune.loguniform(0, 1)}, 3, progress=False,
                           journal=journal)
    assert calls == [] and not journal.exists()


def test_distributions_are_immutable_values():
    a = tune.loguniform(1e-4, 1)
    assert a == tune.loguniform(1e-4, 1) and hash(a) == hash(tune.loguniform(1e-4, 1))
    assert a != tune.uniform(1e-4, 1)
    with pytest.raises(AttributeError):
        a.low = 3
    assert repr(tune.integer(1, 8, log=True)) == "integer(1, 8, log=True)"
