"""Successive halving: who gets which budget, counted trial by trial."""

import pytest

from fastnn import tune
from fastnn.tune import synthetic
from fastnn.tune.space import validate_space

SPACE = {"lr": tune.loguniform(1e-6, 1), "beta": tune.one_minus_loguniform(0.5, 0.9999),
         "x": tune.uniform(-1, 1)}


@pytest.mark.parametrize("args, expected", [
    ((27, 1, 27, 3), [(27, 1), (9, 3), (3, 9), (1, 27)]),
    ((20, 1, 10, 3), [(20, 1), (6, 3), (2, 10)]),
    ((16, 2, 32, 2), [(16, 2), (8, 4), (4, 8), (2, 16), (1, 32)]),
    ((5, 1, 1, 3), [(5, 1)]),
    ((9, 0.5, 4.5, 3), [(9, 0.5), (3, 1.5), (1, 4.5)]),
    ((4, 1, 81, 3), [(4, 1), (1, 3), (1, 9), (1, 27), (1, 81)]),
])
def test_schedule(args, expected):
    assert tune.halving_schedule(*args) == expected


def test_the_largest_budget_goes_only_to_the_best_configurations():
    result = tune.successive_halving(synthetic.bowl_at_budget, SPACE, 27, min_budget=1,
                                     max_budget=27, eta=3, seed=5, progress=False)
    budgets = {}
    for trial in result.trials:
        assert trial.metrics["budget"] == trial.budget          # the objective got it
        budgets.setdefault(trial.config, []).append(trial.budget)
    # Every configuration ran at 1; each rung's budget is eta times the last.
    assert sorted(budgets) == list(range(27))
    assert all(b == [1, 3, 9, 27][:len(b)] for b in budgets.values())
    counts = [sum(1 for b in budgets.values() if len(b) > rung) for rung in range(4)]
    assert counts == [27, 9, 3, 1]
    total = sum(trial.budget for trial in result.trials)
    assert total == 27 * 1 + 9 * 3 + 3 * 9 + 1 * 27
    # bowl_at_budget keeps the true order at every budget, so the configurations
    # that reach each rung are exactly the best ones by the true score.
    space = validate_space(SPACE)
    truth = sorted(range(27), key=lambda c: -synthetic.bowl(tune.sample_params(space, 5, 0, c)))
    for rung, count in enumerate(counts):
        reached = {config for config, b in budgets.items() if len(b) > rung}
        assert reached == set(truth[:count])
    assert result.best.config == truth[0] and result.best.budget == 27
    # Same configuration, same params, at every budget.
    for trial in result.trials:
        assert trial.params == tune.sample_params(space, 5, 0, trial.config)
    assert [t.round for t in result.trials] == [0] * 27 + [1] * 9 + [2] * 3 + [3]


def test_failed_configurations_never_go_on():
    space = {"x": tune.uniform(0, 1), "how": tune.choice(["ok", "raise", "nan"])}

    result = tune.successive_halving(budgeted_misbehave, space, 12, min_budget=1, max_budget=4,
                                     eta=2, seed=1, progress=False)
    rung0 = [t for t in result.trials if t.round == 0]
    assert any(not t.ok for t in rung0)
    promoted = {t.config for t in result.trials if t.round > 0}
    assert promoted and all(result.trials[c].ok for c in promoted)
    assert result.best.budget == 4


def budgeted_misbehave(params, budget):
    return synthetic.misbehave(params)


def test_min_mode_promotes_the_smallest_scores():
    result = tune.successive_halving(neg_bowl_at_budget, SPACE, 9, min_budget=1, max_budget=9,
                                     mode="min", seed=2, progress=False)
    rung0 = sorted((t for t in result.trials if t.round == 0), key=lambda t: t.score)
    assert {t.config for t in result.trials if t.round == 1} == {t.config for t in rung0[:3]}


def neg_bowl_at_budget(params, budget):
    return -synthetic.bowl_at_budget(params, budget)["score"]


@pytest.mark.parametrize("kwargs, error, start", [
    ({"min_budget": 0, "max_budget": 9}, ValueError, "min_budget:"),
    ({"min_budget": 3, "max_budget": 1}, ValueError, "max_budget:"),
    ({"min_budget": 1, "max_budget": 9, "eta": 1}, ValueError, "eta:"),
    ({"min_budget": 1, "max_budget": 9, "eta": 2.5}, ValueError, "eta:"),
    ({"min_budget": "1", "max_budget": 9}, TypeError, "min_budget:"),
])
def test_bad_budgets_are_errors_naming_them(kwargs, error, start):
    with pytest.raises(error) as raised:
        tune.successive_halving(synthetic.bowl_at_budget, SPACE, 9, progress=False, **kwargs)
    assert str(raised.value).startswith(start), str(raised.value)
