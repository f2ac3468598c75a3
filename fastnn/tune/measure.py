"""Measurements of fastnn.tune: what the machinery costs per trial, and what parallel buys.

``overhead(n)``: n trials of an objective that returns at once
(``synthetic.constant``), so the wall time per trial is what sampling,
dispatch and recording cost: serially with and without the progress bar and
the journal, and on a warm process pool (one round trip to a worker each).

``throughput(n_trials, seconds)``: the same seeded 16-trial random search of
``synthetic.train_mlp`` (a small MLP trained by fastnn's NumPy kernels,
CPU-bound, epochs chosen so one trial takes about ``seconds``) run
serially, with ``executor="processes"`` (pool start-up included: that is
what a user waits for), on a pool kept warm, and on a Dask LocalCluster of
one single-threaded worker per core (``dask_local_executor``, with Dask's
profiler off and, for comparison, on) whose start-up is reported apart (the
warm pool and the cluster have run one short trial per worker first, so
imports are behind them); the trials of every run must be identical.

``digits_throughput(n_trials)``: the same comparison for what ``python -m
fastnn tune digits`` runs (its objective and space, random search).

``anchors(n_trials, target)``: that random search of the digits MLP next to
the tools a user would pick instead -- Optuna's ``RandomSampler`` on the
same objective function, scikit-learn's ``RandomizedSearchCV`` over
``MLPClassifier`` on the same split and ranges -- with the wall time until a
trial first reached ``target`` validation accuracy and the best accuracy
found.  Optuna and scikit-learn are optional: a missing one's row says so.

Each prints a report and returns its figures as a dict.  Run them on a
quiet machine (nothing else timing at once)::

    python -m fastnn.tune measure [--overhead]
        [--throughput] [--digits] [--anchors]       (none given: all four)
"""

import contextlib
import io
import os
import tempfile
import time

from . import synthetic
from .executors import available_cores, dask_local_executor, process_pool
from .search import random_search
from .space import integer, loguniform, one_minus_loguniform, sample_params, validate_space, uniform


def _wall(call):
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def overhead(n=2000, pool_trials=400):
    space = {"lr": loguniform(1e-5, 1), "beta": one_minus_loguniform(0.8, 0.999),
             "width": integer(16, 1024, log=True), "x": uniform(0, 1), "epochs": 10}
    checked = validate_space(space)
    figures = {"n": n, "parameters": 4}
    seconds, _ = _wall(lambda: [sample_params(checked, 0, 0, i) for i in range(n)])
    figures["sampling_ms"] = 1e3 * seconds / n

    seconds, _ = _wall(lambda: random_search(synthetic.constant, space, n, progress=False))
    figures["serial_ms"] = 1e3 * seconds / n
    with contextlib.redirect_stderr(io.StringIO()):
        seconds, _ = _wall(lambda: random_search(synthetic.constant, space, n, progress=True))
    figures["serial_progress_ms"] = 1e3 * seconds / n
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "journal.jsonl")
        seconds, _ = _wall(lambda: random_search(synthetic.constant, space, n, progress=False,
                                                 journal=path))
    figures["serial_journal_ms"] = 1e3 * seconds / n
    with process_pool() as pool:
        random_search(synthetic.constant, space, 2 * available_cores(), executor=pool,
                      progress=False)     # workers started and warm
        seconds, _ = _wall(lambda: random_search(synthetic.constant, space, pool_trials,
                                                 executor=pool, progress=False))
    figures["pool_ms"] = 1e3 * seconds / pool_trials
    figures["pool_trials"] = pool_trials
    print(f"per-trial overhead, trivial objective, {n} trials, 4 sampled parameters:")
    print(f"  sampling alone            {figures['sampling_ms']:.3f} ms")
    print(f"  serial                    {figures['serial_ms']:.3f} ms")
    print(f"  serial + progress bar     {figures['serial_progress_ms']:.3f} ms")
    print(f"  serial + journal          {figures['serial_journal_ms']:.3f} ms")
    print(f"  warm process pool ({available_cores()} workers, {pool_trials} trials) "
          f"{figures['pool_ms']:.3f} ms")
    return figures


def _mlp_space(epochs):
    return {"lr": loguniform(1e-3, 0.1), "beta": one_minus_loguniform(0.5, 0.95),
            "width": 128, "epochs": epochs}


def _outcomes(result):
    return [(t.number, t.params, t.score, t.status) for t in result.trials]


def _parallel_runs(objective, space, warmup, n_trials):
    """The same seeded search serially, on a fresh pool, a warm pool and Dask.

    ``warmup`` is a space of short trials run first on the warm pool and on
    each cluster, so that their workers have imported and loaded what the
    trials need.  Returns ``(runs, dask_start, identical)``: runs are
    ``(name, key, wall seconds, SearchResult)``.
    """
    cores = available_cores()

    def search(executor):
        return random_search(objective, space, n_trials, seed=0, executor=executor,
                             progress=False)

    seconds, serial = _wall(lambda: search(None))
    runs = [("serial", "serial", seconds, serial)]
    seconds, processes = _wall(lambda: search("processes"))
    runs.append(("executor='processes'", "processes", seconds, processes))
    with process_pool() as pool:
        random_search(objective, warmup, 4 * cores, executor=pool, progress=False)
        seconds, warm = _wall(lambda: search(pool))
    runs.append(("warm process pool", "warm_pool", seconds, warm))
    dask_start = {}
    try:
        import distributed  # noqa: F401
    except ImportError:
        pass
    else:
        for profile in (False, True):
            start = time.perf_counter()
            with dask_local_executor(cores, profile=profile) as executor:
                random_search(objective, warmup, 4 * cores, executor=executor, progress=False)
                key = "dask_profiler" if profile else "dask"
                dask_start[key] = time.perf_counter() - start
                seconds, result = _wall(lambda: search(executor))
            runs.append(("Dask, its profiler on" if profile else "Dask LocalCluster", key,
                         seconds, result))
    identical = all(_outcomes(result) == _outcomes(serial) for _, _, _, result in runs)
    return runs, dask_start, identical


def _report_runs(figures, runs, dask_start, identical, what):
    """Fill ``figures`` from ``_parallel_runs`` and print the table."""
    walls = {key: seconds for _, key, seconds, _ in runs}
    n_trials = figures["n_trials"]
    for key, seconds in walls.items():
        figures[f"{key}_s"] = seconds
    for key, seconds in dask_start.items():
        figures[f"{key}_start_s"] = seconds
        figures[f"{key}_over_processes"] = walls[key] / walls["processes"]
        figures[f"{key}_over_warm_pool"] = walls[key] / walls["warm_pool"]
    figures["trial_s"] = sum(t.seconds for t in runs[0][3].trials) / n_trials
    figures["speedup_processes"] = walls["serial"] / walls["processes"]
    figures["speedup_warm_pool"] = walls["serial"] / walls["warm_pool"]
    figures["identical"] = identical
    print(f"throughput: random search of {n_trials} trials of {what}, "
          f"{figures['cores']} cores; 'trial' is the mean time of one trial where it ran")
    print(f"  {'run':<22}{'wall':>8}{'trial':>8}{'speedup':>10}{'/processes':>13}"
          f"{'/warm pool':>13}")
    for name, key, wall, result in runs:
        trial = sum(t.seconds for t in result.trials) / n_trials
        print(f"  {name:<22}{wall:7.2f}s{trial:7.2f}s{walls['serial'] / wall:10.2f}"
              f"{wall / walls['processes']:13.3f}{wall / walls['warm_pool']:13.3f}")
    print("  (executor='processes' includes starting the pool; the Dask cluster started in "
          + ", ".join(f"{seconds:.2f} s" for seconds in dask_start.values())
          + ", not included)"
          if dask_start else "  Dask LocalCluster: not measured (pip install distributed)")
    print(f"  identical trials on every executor: {'yes' if identical else 'NO'}")
    return figures


def throughput(n_trials=16, seconds=1.0):
    probe = sample_params(validate_space(_mlp_space(10)), 0, 0, 0)
    synthetic.train_mlp(dict(probe, epochs=1))                       # imports, caches
    # Per epoch from the difference of two lengths, free of the fixed costs.
    short, _ = _wall(lambda: synthetic.train_mlp(dict(probe, epochs=5)))
    long, _ = _wall(lambda: synthetic.train_mlp(dict(probe, epochs=25)))
    epochs = max(1, round(seconds / max((long - short) / 20, 1e-6)))
    took, _ = _wall(lambda: synthetic.train_mlp(dict(probe, epochs=epochs)))
    epochs = max(1, round(epochs * seconds / took))
    warmup = {"lr": 0.01, "beta": 0.9, "width": 8, "epochs": 1}
    figures = {"n_trials": n_trials, "epochs": epochs, "cores": available_cores()}
    runs, dask_start, identical = _parallel_runs(synthetic.train_mlp, _mlp_space(epochs),
                                                 warmup, n_trials)
    return _report_runs(figures, runs, dask_start, identical,
                        f"train_mlp ({epochs} epochs)")


def _digits_warmup():
    from . import digits
    # One epoch of each kind of model (with and without BatchNorm), so that
    # a worker has read the data and loaded its kernels before it is timed.
    return dict(digits.SPACE, lr=1e-3, beta1=0.9, hidden=16, batch_size=256, epochs=1)


def digits_throughput(n_trials=16):
    """``python -m fastnn tune digits --trials n_trials`` (random, its default space)
    serially, on processes (fresh and warm) and on Dask; what the CPU gains."""
    from . import digits
    digits.train_digits(_digits_warmup())       # this process: data, kernels
    figures = {"n_trials": n_trials, "epochs": digits.EPOCHS, "cores": available_cores()}
    runs, dask_start, identical = _parallel_runs(digits.train_digits, digits.SPACE,
                                                 _digits_warmup(), n_trials)
    return _report_runs(figures, runs, dask_start, identical,
                        f"the digits MLP ({digits.EPOCHS} epochs, tune digits' space)")


# --- the anchors: the same search with Optuna and with scikit-learn -------

def timed_train_digits(params, budget=None):
    """``digits.train_digits`` with the wall-clock time it finished, for time-to-target.

    ``time.time()`` rather than a monotonic clock: trials in worker processes
    are compared with the parent's start.
    """
    from . import digits
    outcome = digits.train_digits(params, budget)
    outcome["finished"] = time.time()
    return outcome


def _time_to(pairs, target, start):
    """Seconds from ``start`` until the first (score, finished) at ``target``, or None."""
    reached = [finished for score, finished in pairs if score is not None and score >= target]
    return min(reached) - start if reached else None


def _fastnn_anchor(n_trials, target, executor):
    from . import digits
    start = time.time()
    result = random_search(timed_train_digits, digits.SPACE, n_trials, seed=0,
                           executor=executor, progress=False)
    wall = time.time() - start
    pairs = [(t.score, t.metrics["finished"]) for t in result.trials if t.ok]
    best = result.best
    params = {k: v for k, v in best.params.items() if k != "epochs"}
    return {"wall_s": wall, "to_target_s": _time_to(pairs, target, start),
            "best_val": best.score, "failed": len(result.failed()),
            "test": digits.retrain(params, best.params["epochs"])[0]}


def _optuna_anchor(n_trials, target):
    import optuna

    from . import digits
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    finished = []

    def objective(trial):
        # The same space: 1 - beta1 log-uniform in [1e-3, 0.2] is beta1 in [0.8, 0.999].
        params = {"lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
                  "beta1": 1.0 - trial.suggest_float("one_minus_beta1", 1e-3, 0.2, log=True),
                  "hidden": trial.suggest_int("hidden", 16, 256, log=True),
                  "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
                  "batchnorm": trial.suggest_categorical("batchnorm", [True, False]),
                  "epochs": digits.EPOCHS}
        try:
            score = digits.train_digits(params)["score"]
        except FloatingPointError:      # diverged: a failed trial, as in fastnn.tune
            score = float("nan")
        finished.append((score if score == score else None, time.time()))
        return score

    start = time.time()
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n_trials)
    wall = time.time() - start
    best = dict(study.best_params)
    params = {"lr": best["lr"], "beta1": 1.0 - best["one_minus_beta1"],
              "hidden": best["hidden"], "batch_size": best["batch_size"],
              "batchnorm": best["batchnorm"]}
    return {"wall_s": wall, "to_target_s": _time_to(finished, target, start),
            "best_val": study.best_value,
            "failed": sum(1 for score, _ in finished if score is None),
            "test": digits.retrain(params, digits.EPOCHS)[0], "version": optuna.__version__}


class _OneMinusLogUniform:
    """beta with 1 - beta log-uniform: a distribution scikit-learn's sampler can draw from."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def rvs(self, random_state=None):
        import numpy as np
        rng = np.random.default_rng(random_state) if not hasattr(random_state, "uniform") \
            else random_state
        unit = rng.uniform(np.log10(1 - self.high), np.log10(1 - self.low))
        return float(1 - 10 ** unit)


class _LogWidthPair:
    """Two hidden layers of one width, the width log-uniform over integers."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def rvs(self, random_state=None):
        import numpy as np
        rng = np.random.default_rng(random_state) if not hasattr(random_state, "uniform") \
            else random_state
        width = int(np.clip(np.floor(10 ** rng.uniform(np.log10(self.low),
                                                       np.log10(self.high + 1))),
                            self.low, self.high))
        return (width, width)


def _sklearn_anchor(n_trials, target):
    import warnings

    import numpy as np
    import sklearn
    from scipy.stats import loguniform
    from sklearn.model_selection import PredefinedSplit, RandomizedSearchCV
    from sklearn.neural_network import MLPClassifier

    from . import digits
    parts = digits.data()
    (x_fit, y_fit), (x_val, y_val) = parts["fit"], parts["validation"]
    x = np.concatenate([x_fit, x_val])
    y = np.concatenate([y_fit, y_val])
    # One split, the same as fastnn's: fit on the fit part, score on validation;
    # refit=True then trains the best on both, the whole training part.
    folds = PredefinedSplit(np.r_[np.full(len(x_fit), -1), np.zeros(len(x_val), int)])
    distributions = {"learning_rate_init": loguniform(1e-4, 1.0),
                     "beta_1": _OneMinusLogUniform(0.8, 0.999),
                     "hidden_layer_sizes": _LogWidthPair(16, 256),
                     "batch_size": [32, 64, 128, 256]}
    search = RandomizedSearchCV(
        MLPClassifier(solver="adam", max_iter=digits.EPOCHS, random_state=0),
        distributions, n_iter=n_trials, cv=folds, refit=True, random_state=0, n_jobs=1,
        error_score=np.nan)
    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # ConvergenceWarning: max_iter is the budget
        search.fit(x, y)
    wall = time.time() - start
    results = search.cv_results_
    scores = results["mean_test_score"]
    # Candidates ran one after the other in this order; their fit and score
    # times add up to when each finished (the search's own dispatch aside).
    ends = start + np.cumsum(results["mean_fit_time"] + results["mean_score_time"])
    pairs = [(None if s != s else float(s), float(e)) for s, e in zip(scores, ends)]
    x_test, y_test = parts["test"]
    return {"wall_s": wall, "to_target_s": _time_to(pairs, target, start),
            "best_val": float(np.nanmax(scores)),
            "failed": int(np.sum(np.isnan(scores))),
            "test": float(search.best_estimator_.score(x_test, y_test)),
            "version": sklearn.__version__}


def anchors(n_trials=32, target=0.97):
    """The same 32-trial random search of the digits MLP four ways, side by side.

    fastnn.tune serially and on processes, Optuna's RandomSampler serially
    on the very same objective (skipped with a message when Optuna is not
    installed), and scikit-learn's RandomizedSearchCV over MLPClassifier on
    the same fit/validation split and ranges (no BatchNorm there).  Each
    row: wall time of the search, time until a trial first reached
    ``target`` validation accuracy, the best validation accuracy, failed
    trials, and the test accuracy of the best retrained on the whole
    training part.
    """
    from . import digits
    digits.train_digits(_digits_warmup())       # data and kernels loaded before timing
    rows = [("fastnn.tune random_search", _fastnn_anchor(n_trials, target, None)),
            ("fastnn.tune, processes", _fastnn_anchor(n_trials, target, "processes"))]
    try:
        import optuna  # noqa: F401
    except ImportError:
        rows.append(("Optuna RandomSampler", None))
    else:
        rows.append(("Optuna RandomSampler", _optuna_anchor(n_trials, target)))
    try:
        import sklearn  # noqa: F401
    except ImportError:
        rows.append(("sklearn RandomizedSearchCV", None))
    else:
        rows.append(("sklearn RandomizedSearchCV", _sklearn_anchor(n_trials, target)))
    print(f"anchors: random search of {n_trials} trials, digits MLP ({digits.EPOCHS} epochs; "
          f"scikit-learn: MLPClassifier, max_iter {digits.EPOCHS}), {available_cores()} cores")
    print(f"  {'search':<28}{'wall':>8}{f'to {target:.0%}':>9}{'best val':>10}"
          f"{'failed':>8}{'test (best)':>13}")
    figures = {}
    for name, row in rows:
        if row is None:
            print(f"  {name:<28}  not measured: pip install "
                  f"{'optuna' if 'Optuna' in name else 'scikit-learn'}")
            continue
        figures[name] = row
        to = "-" if row["to_target_s"] is None else f"{row['to_target_s']:.2f}s"
        print(f"  {name:<28}{row['wall_s']:7.2f}s{to:>9}{row['best_val']:10.2%}"
              f"{row['failed']:8d}{row['test']:13.2%}")
    versions = [f"{name.split()[0]} {row['version']}" for name, row in figures.items()
                if "version" in row]
    if versions:
        print("  (" + ", ".join(versions) + "; Optuna and fastnn.tune run the same objective "
              "function; every search serial unless its row says otherwise)")
    return figures
