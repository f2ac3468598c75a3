"""The searches: random, coarse to fine, successive halving.

All three are the same loop: decide a batch of trials (their numbers and
configurations are fixed before any of them runs), run the batch on the
executor, record each trial as it finishes, then decide the next batch from
the scores -- the next coarse-to-fine round samples a narrowed space, the
next halving rung trains the best configurations on a larger budget.

    random_search       one batch of n_trials configurations
    coarse_to_fine      `rounds` batches; each numeric range narrows to the
                        best `keep` fraction of the previous round
    successive_halving  n_trials configurations on min_budget; the best
                        1/eta go on at eta times the budget, up to max_budget

Because a trial's configuration depends only on (seed, round, index) and the
batches are decided from scores alone, a search gives the same trials
whatever executes them, in whatever order they finish, and when resumed
from its journal: the finished trials found there are not run again.

Objective: ``objective(params) -> score | {"score": score, **metrics}``
(``objective(params, budget)`` for successive halving); ``mode`` says
whether a larger ("max") or smaller ("min") score is better.

Tests: ``tests/test_tune_search.py``, ``tests/test_tune_halving.py``,
``tests/test_tune_failures.py``, ``tests/test_tune_resume.py``,
``tests/test_tune_executors.py``; measured by ``python -m fastnn.tune measure``.
"""

import concurrent.futures
import math
import numbers
import pickle

from .executors import check_executor, resolve_executor
from .results import Journal, SearchResult, Trial, sort_key
from .space import is_distribution, sample_params, space_to_json, validate_space
from .worker import run_trial

__all__ = ["random_search", "coarse_to_fine", "successive_halving"]


# --- argument checks ------------------------------------------------------

def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _positive_number(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return value


def _common(objective, space, seed, mode, timeout, progress):
    if not callable(objective):
        raise TypeError(f"objective: expected a callable, got {type(objective).__name__}")
    space = validate_space(space)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    timeout = _positive_number("timeout", timeout, allow_none=True)
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected True or False, got {progress!r}")
    return space, int(seed), timeout


# --- running one batch ----------------------------------------------------

class _Task:
    __slots__ = ("number", "round", "config", "budget", "params")

    def __init__(self, number, round, config, budget, params):
        self.number, self.round, self.config = number, round, config
        self.budget, self.params = budget, params


class _Run:
    """The state of one search while it runs: journal, executor, progress bar."""

    def __init__(self, kind, settings, objective, executor, timeout, journal, progress,
                 total, mode):
        self.kind, self.settings, self.mode = kind, settings, mode
        self.objective, self.timeout = objective, timeout
        self.trials = {}
        self.spaces = []
        self.interrupted = False
        check_executor(executor)
        if (isinstance(executor, str) and executor == "processes") or isinstance(
                executor, concurrent.futures.ProcessPoolExecutor):
            try:
                pickle.dumps(objective)
            except Exception as exc:
                raise TypeError(f"objective: worker processes need a picklable objective "
                                f"(a function defined at the top level of a module), "
                                f"got {objective!r}: {exc}") from None
        self.journal = None if journal is None else Journal(journal, kind, settings)
        try:
            self.executor, self.owned = resolve_executor(executor)
        except BaseException:
            if self.journal is not None:
                self.journal.close()
            raise
        self.best = None
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=kind.replace("_", " "), unit="trial",
                            dynamic_ncols=True)

    def start_round(self, number, space):
        self.spaces.append(space)
        if self.journal is not None:
            self.journal.add_round(number, space)

    def _record(self, task, outcome):
        trial = Trial(number=task.number, params=task.params, score=outcome["score"],
                      metrics=outcome["metrics"], status=outcome["status"],
                      error=outcome["error"], seconds=outcome["seconds"], round=task.round,
                      config=task.config, budget=task.budget)
        self.trials[trial.number] = trial
        if self.journal is not None:
            self.journal.add_trial(trial)
        self._progress(trial)
        return trial

    def _progress(self, trial):
        if trial.ok and (self.best is None or sort_key(self.mode)(trial) < sort_key(self.mode)(self.best)):
            self.best = trial
        if self.bar is not None:
            if self.best is not None:
                self.bar.set_postfix_str(f"best={self.best.score:.6g}", refresh=False)
            self.bar.update(1)

    def run(self, tasks):
        """Run ``tasks`` (skipping those the journal holds); False if interrupted."""
        todo = []
        for task in tasks:
            done = self.journal.trials.get(task.number) if self.journal is not None else None
            if done is None:
                todo.append(task)
                continue
            if done.params != task.params or done.budget != task.budget:
                raise ValueError(f"journal: trial {task.number} in {self.journal.path!r} "
                                 f"has other parameters than this search draws; the "
                                 f"journal belongs to a different search")
            self.trials[done.number] = done
            self._progress(done)
        if self.executor is None:
            return self._run_serial(todo)
        return self._run_parallel(todo)

    def _run_serial(self, todo):
        for task in todo:
            try:
                outcome = run_trial(self.objective, task.params, task.budget, self.timeout)
            except KeyboardInterrupt:
                self.interrupted = True
                return False
            self._record(task, outcome)
        return True

    def _run_parallel(self, todo):
        pending = {}
        try:
            for task in todo:
                future = self.executor.submit(run_trial, self.objective, task.params,
                                              task.budget, self.timeout)
                pending[future] = task
            while pending:
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                # Record in trial order within one wake-up, so the journal of a
                # serial-looking pool reads in order; the result never depends on it.
                for future in sorted(done, key=lambda f: pending[f].number):
                    task = pending.pop(future)
                    self._record(task, future.result())
        except KeyboardInterrupt:
            self.interrupted = True
            for future in pending:
                future.cancel()
            return False
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        return True

    def close(self):
        if self.bar is not None:
            self.bar.close()
        if self.journal is not None:
            self.journal.close()
        if self.owned:
            # After Ctrl-C, do not wait for running trials; their results are lost
            # either way, and the journal holds everything that finished.
            self.executor.shutdown(wait=not self.interrupted, cancel_futures=True)

    def result(self):
        return SearchResult(self.kind, self.settings, list(self.trials.values()),
                            self.spaces, interrupted=self.interrupted)


def _search(kind, settings, objective, executor, timeout, journal, progress, total, plan):
    """Run ``plan(run)``, a generator of batches, and return the SearchResult."""
    run = _Run(kind, settings, objective, executor, timeout, journal, progress, total,
               settings["mode"])
    try:
        plan(run)
    finally:
        run.close()
    return run.result()


# --- the three searches ---------------------------------------------------

def random_search(objective, space, n_trials, *, executor=None, seed=0, mode="max",
                  timeout=None, journal=None, progress=True):
    """``n_trials`` configurations drawn at random from ``space``; a ``SearchResult``.

    ``executor``: None (this process), ``"processes"`` (one single-threaded
    worker per core) or any ``concurrent.futures.Executor`` (a Dask
    cluster's ``client.get_executor()``).  ``timeout``: seconds a trial may
    take before it is recorded as failed.  ``journal``: a path; every
    finished trial is appended to it, and a search run again with the same
    journal skips the trials found there.  ``progress``: a tqdm bar with the
    best score so far.
    """
    space, seed, timeout = _common(objective, space, seed, mode, timeout, progress)
    n_trials = _positive_int("n_trials", n_trials)
    settings = {"seed": seed, "mode": mode, "n_trials": n_trials, "space": space_to_json(space)}

    def plan(run):
        run.start_round(0, space)
        run.run([_Task(i, 0, i, None, sample_params(space, seed, 0, i))
                 for i in range(n_trials)])

    return _search("random_search", settings, objective, executor, timeout, journal,
                   progress, n_trials, plan)


def shrink_space(space, trials, keep, mode):
    """The space of the next coarse-to-fine round, from one round's ``trials``.

    Each numeric range narrows to the span of the best ``keep`` fraction of
    the finished trials (at least two of them), measured where the
    distribution is uniform: log10(x) for log-scaled parameters, log10(1 - x)
    for ``one_minus_loguniform``, x otherwise.  The span of k points drawn
    from an interval falls short of it by 2/(k + 1) of its width on average,
    so the span is widened by span/(k - 1) on each side (the unbiased
    estimate of the interval, from the range of a uniform sample), and then
    clipped to the previous range.  Choices and constants are kept as they
    are.  With fewer than two finished trials the space is kept.
    """
    finished = sorted((trial for trial in trials if trial.ok), key=sort_key(mode))
    if len(finished) < 2:
        return dict(space)
    k = max(2, math.ceil(keep * len(finished)))
    best = finished[:k]
    narrowed = {}
    for name, dist in space.items():
        if not is_distribution(dist) or dist.kind == "choice" or dist.low == dist.high:
            narrowed[name] = dist
            continue
        units = [dist.to_unit(trial.params[name]) for trial in best]
        lo, hi = min(units), max(units)
        pad = (hi - lo) / (k - 1)
        bound_a, bound_b = dist.to_unit(dist.low), dist.to_unit(dist.high)
        outer_lo, outer_hi = min(bound_a, bound_b), max(bound_a, bound_b)
        lo, hi = max(lo - pad, outer_lo), min(hi + pad, outer_hi)
        a, b = sorted((dist.from_unit(lo), dist.from_unit(hi)))
        if dist.kind == "integer":
            a, b = max(dist.low, math.floor(a + 1e-9)), min(dist.high, math.ceil(b - 1e-9))
            narrowed[name] = dist.with_bounds(a, min(max(a, b), dist.high))
        elif a < b:
            narrowed[name] = dist.with_bounds(max(a, dist.low), min(b, dist.high))
        else:
            narrowed[name] = dist
    return narrowed


def coarse_to_fine(objective, space, *, rounds=3, trials_per_round=16, keep=0.25,
                   executor=None, seed=0, mode="max", timeout=None, journal=None,
                   progress=True):
    """Random search in ``rounds`` rounds, each zoomed into the best region of the last.

    Round r samples ``trials_per_round`` configurations from ``result.spaces[r]``;
    after it, ``shrink_space`` narrows every numeric range to the best
    ``keep`` fraction of its trials.  ``result.trials`` holds every round's
    trials (``trial.round`` says which).  Other arguments as ``random_search``.
    """
    space, seed, timeout = _common(objective, space, seed, mode, timeout, progress)
    rounds = _positive_int("rounds", rounds)
    trials_per_round = _positive_int("trials_per_round", trials_per_round)
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real) or not 0 < keep <= 1:
        raise ValueError(f"keep: expected a fraction in (0, 1], got {keep!r}")
    if rounds > 1 and trials_per_round < 2:
        raise ValueError(f"trials_per_round: a range narrows around at least 2 trials, "
                         f"got {trials_per_round}")
    settings = {"seed": seed, "mode": mode, "rounds": rounds,
                "trials_per_round": trials_per_round, "keep": float(keep),
                "space": space_to_json(space)}

    def plan(run):
        current = space
        for r in range(rounds):
            if r:
                previous = [run.trials[n] for n in range((r - 1) * trials_per_round,
                                                         r * trials_per_round)]
                current = shrink_space(current, previous, keep, mode)
            run.start_round(r, current)
            tasks = [_Task(r * trials_per_round + i, r, r * trials_per_round + i, None,
                           sample_params(current, seed, r, i))
                     for i in range(trials_per_round)]
            if not run.run(tasks):
                return

    return _search("coarse_to_fine", settings, objective, executor, timeout, journal,
                   progress, rounds * trials_per_round, plan)


def halving_schedule(n_trials, min_budget, max_budget, eta):
    """``[(configurations, budget), ...]`` per rung of successive halving.

    Budgets grow by ``eta`` from ``min_budget``; the last rung gets exactly
    ``max_budget`` (it is the one that counts).  Rung r runs
    max(1, n_trials // eta**r) configurations.  Integer budgets stay integers.
    """
    steps = int(math.floor(math.log(max_budget / min_budget) / math.log(eta) + 1e-9))
    integral = isinstance(min_budget, numbers.Integral) and isinstance(max_budget, numbers.Integral)
    schedule, count = [], n_trials
    for r in range(steps + 1):
        budget = max_budget if r == steps else min_budget * eta ** r
        if integral:
            budget = int(round(budget))
        schedule.append((count, budget))
        count = max(1, count // eta)
    return schedule


def successive_halving(objective, space, n_trials, *, min_budget, max_budget, eta=3,
                       executor=None, seed=0, mode="max", timeout=None, journal=None,
                       progress=True):
    """Train ``n_trials`` configurations briefly, and only the best ones for long.

    ``objective(params, budget)``: the budget is what to spend (epochs, say).
    Rung 0 runs every configuration at ``min_budget``; each next rung runs
    the best 1/``eta`` of the previous one (failed ones never go on) at
    ``eta`` times its budget, and the last at ``max_budget``
    (``halving_schedule`` gives the counts and budgets).  Trials are one per
    (configuration, rung): ``trial.config`` identifies the configuration,
    ``trial.round`` the rung and ``trial.budget`` what it got.
    ``result.best`` is the best trial of the last rung.  Other arguments as
    ``random_search``.
    """
    space, seed, timeout = _common(objective, space, seed, mode, timeout, progress)
    n_trials = _positive_int("n_trials", n_trials)
    min_budget = _positive_number("min_budget", min_budget)
    max_budget = _positive_number("max_budget", max_budget)
    if max_budget < min_budget:
        raise ValueError(f"max_budget: expected at least min_budget ({min_budget!r}), "
                         f"got {max_budget!r}")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Integral) or eta < 2:
        raise ValueError(f"eta: expected an integer of at least 2, got {eta!r}")
    eta = int(eta)
    schedule = halving_schedule(n_trials, min_budget, max_budget, eta)
    settings = {"seed": seed, "mode": mode, "n_trials": n_trials, "min_budget": min_budget,
                "max_budget": max_budget, "eta": eta, "space": space_to_json(space)}
    key = sort_key(mode)

    def plan(run):
        run.start_round(0, space)
        configs = list(range(n_trials))
        params = {c: sample_params(space, seed, 0, c) for c in configs}
        offset = 0
        for rung, (count, budget) in enumerate(schedule):
            if rung:
                previous = [run.trials[offset - len(configs) + i] for i in range(len(configs))]
                ranked = sorted((t for t in previous if t.ok), key=key)
                configs = sorted(t.config for t in ranked[:count])
                if not configs:
                    return
            tasks = [_Task(offset + i, rung, c, budget, params[c]) for i, c in enumerate(configs)]
            offset += len(configs)
            if not run.run(tasks):
                return

    total = sum(count for count, _ in schedule)
    return _search("successive_halving", settings, objective, executor, timeout, journal,
                   progress, total, plan)
