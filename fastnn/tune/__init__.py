"""fastnn.tune: hyperparameter search -- random, on each parameter's own scale,
coarse to fine or by successive halving, on one core, all cores, or a cluster.

    from fastnn import tune

    space = {"lr": tune.loguniform(1e-4, 1), "beta1": tune.one_minus_loguniform(0.8, 0.999),
             "width": tune.integer(32, 512, log=True), "batchnorm": tune.choice([True, False]),
             "epochs": 10}
    result = tune.random_search(train_and_score, space, 32, executor="processes", journal="lr.jsonl")
    print(result.table()); print(result.best.params); result.plot("search.png")

Modules: ``space`` (the distributions and the seeded sampler), ``search``
(the three searches), ``results`` (Trial, SearchResult and the JSON-lines
journal), ``executors`` (the single-threaded process pool; any
``concurrent.futures.Executor`` works), ``worker`` (one trial, with its
timeout and error capture), ``plot``, ``synthetic`` (objectives with known
answers, for tests and measurements), ``measure`` and ``cli``
(``python -m fastnn.tune``), ``digits`` (the digits MLP as an objective:
``python -m fastnn tune digits``).  Tests: ``tests/test_tune_*.py``.
"""

from .executors import process_pool
from .results import SearchResult, Trial
from .search import coarse_to_fine, halving_schedule, random_search, shrink_space, successive_halving
from .space import (
    choice,
    integer,
    loguniform,
    one_minus_loguniform,
    sample_params,
    uniform,
    validate_space,
)
from .worker import TrialTimeout

__all__ = [
    "uniform", "loguniform", "one_minus_loguniform", "integer", "choice",
    "validate_space", "sample_params",
    "random_search", "coarse_to_fine", "successive_halving", "halving_schedule", "shrink_space",
    "SearchResult", "Trial", "TrialTimeout", "process_pool",
]
