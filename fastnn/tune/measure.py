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

Both print a report and return its figures as a dict.  Run them under the
exclusive lock on the shared machine::

    flock -x /work/measure.lock python -m fastnn.tune measure
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
    space = _mlp_space(epochs)
    cores = available_cores()
    figures = {"n_trials": n_trials, "epochs": epochs, "cores": cores}

    def search(executor):
        return random_search(synthetic.train_mlp, space, n_trials, seed=0, executor=executor,
                             progress=False)

    figures["serial_s"], serial = _wall(lambda: search(None))
    figures["trial_s"] = sum(t.seconds for t in serial.trials) / n_trials
    figures["processes_s"], processes = _wall(lambda: search("processes"))
    with process_pool() as pool:
        random_search(synthetic.train_mlp, warmup, 2 * cores, executor=pool, progress=False)
        figures["warm_pool_s"], warm = _wall(lambda: search(pool))
    same = _outcomes(serial) == _outcomes(processes) == _outcomes(warm)
    dask_runs = {}
    try:
        import distributed  # noqa: F401
    except ImportError:
        pass
    else:
        for profile in (False, True):
            start = time.perf_counter()
            with dask_local_executor(cores, profile=profile) as executor:
                random_search(synthetic.train_mlp, warmup, 2 * cores, executor=executor,
                              progress=False)
                started = time.perf_counter() - start
                dask_runs[profile] = (started,) + _wall(lambda: search(executor))
            same = same and _outcomes(dask_runs[profile][2]) == _outcomes(serial)
    figures["identical"] = same
    figures["speedup_processes"] = figures["serial_s"] / figures["processes_s"]
    runs = [("serial", figures["serial_s"], serial),
            ("executor='processes'", figures["processes_s"], processes),
            ("warm process pool", figures["warm_pool_s"], warm)]
    for profile, (started, wall, result) in dask_runs.items():
        key = "dask_profiler" if profile else "dask"
        figures[f"{key}_s"], figures[f"{key}_start_s"] = wall, started
        figures[f"{key}_over_processes"] = wall / figures["processes_s"]
        figures[f"{key}_over_warm_pool"] = wall / figures["warm_pool_s"]
        runs.append(("Dask, its profiler on" if profile else "Dask LocalCluster", wall, result))
    print(f"throughput: random search of {n_trials} trials of train_mlp ({epochs} epochs), "
          f"{cores} cores; 'trial' is the mean time of one trial where it ran")
    print(f"  {'run':<22}{'wall':>8}{'trial':>8}{'speedup':>10}{'/processes':>13}"
          f"{'/warm pool':>13}")
    for name, wall, result in runs:
        trial = sum(t.seconds for t in result.trials) / n_trials
        print(f"  {name:<22}{wall:7.2f}s{trial:7.2f}s{figures['serial_s'] / wall:10.2f}"
              f"{wall / figures['processes_s']:13.3f}{wall / figures['warm_pool_s']:13.3f}")
    print("  (executor='processes' includes starting the pool; the Dask cluster started in "
          + ", ".join(f"{dask_runs[p][0]:.2f} s" for p in dask_runs) + ", not included)"
          if dask_runs else "  Dask LocalCluster: not measured (pip install distributed)")
    print(f"  identical trials on every executor: {'yes' if same else 'NO'}")
    return figures
