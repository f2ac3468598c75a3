"""Where trials run: this process, a pool of single-threaded processes, or a cluster.

A search's ``executor`` is one of

- ``None`` (or ``"serial"``): each trial runs in this process, one after the
  other, with no pickling and no executor at all;
- ``"processes"``: ``process_pool()``, one worker process per core the
  search may use, created for the search and shut down after it;
- any ``concurrent.futures.Executor`` -- a ``process_pool()`` kept across
  searches, a ``ThreadPoolExecutor``, or a Dask cluster's
  ``distributed.Client(...).get_executor()``.  A ``distributed.Client``
  given directly is replaced by its ``get_executor()``.

The searches use an executor only through ``submit`` and the futures it
returns (``result``, and ``concurrent.futures.wait`` to learn which finished
first), so anything that implements the ``Executor`` interface runs the
same search with the same results.

Why one kernel thread per worker: Numba, OpenMP and OpenBLAS each start as
many threads as there are cores, so N workers on N cores would run N*N
threads that preempt each other.  Those libraries read their thread count
from the environment when they load, which in a spawned worker happens while
it unpickles its first task (or imports the parent's main module) -- before
any initializer could run.  So the pool's processes are started with
``worker.ONE_THREAD_ENV`` in their environment: the parent's ``os.environ``
holds those values only while it starts a worker, under a lock, and gets its
own values back at once.

Tests: ``tests/test_tune_executors.py``.
"""

import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.context
import os
import threading

from .worker import ONE_THREAD_ENV, limit_threads

__all__ = ["process_pool", "dask_local_executor", "available_cores", "check_executor",
           "resolve_executor"]

_environ_lock = threading.Lock()


def available_cores():
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _OneThreadProcess(multiprocessing.context.SpawnProcess):
    """A spawned process whose interpreter starts with ``ONE_THREAD_ENV``."""

    def start(self):
        with _environ_lock:
            saved = {key: os.environ.get(key) for key in ONE_THREAD_ENV}
            os.environ.update(ONE_THREAD_ENV)
            try:
                super().start()
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


class _OneThreadContext(multiprocessing.context.SpawnContext):
    # "spawn": a fresh interpreter, never a fork of a parent whose threads
    # (Numba's, OpenBLAS's, tqdm's) a forked child would inherit half-dead.
    Process = _OneThreadProcess


def process_pool(max_workers=None):
    """A ``ProcessPoolExecutor`` of single-threaded workers, one per core by default.

    Keep one across several searches to pay the workers' start-up (about a
    quarter of a second each: a fresh interpreter importing NumPy) once.
    Objectives must be picklable: functions defined at the top level of an
    importable module, and a script that makes a pool needs the usual
    ``if __name__ == "__main__":`` guard, since workers import it.
    """
    if max_workers is None:
        max_workers = available_cores()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"max_workers: expected a positive integer, got {max_workers!r}")
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=max_workers, mp_context=_OneThreadContext(),
        initializer=limit_threads)


@contextlib.contextmanager
def dask_local_executor(n_workers=None, profile=False):
    """A Dask ``LocalCluster`` on this machine, as an Executor (a context manager).

    One single-threaded worker process per core, started with
    ``worker.ONE_THREAD_ENV`` (Dask itself limits OpenMP, MKL and OpenBLAS,
    not Numba); its dashboard on a free port (never a clash with another
    cluster).  Each Dask worker runs a trial in a thread beside its event
    loop, and every wake-up of that loop takes the GIL from the trial, so
    the loop's periodic chores are slowed down here: Dask's statistical
    profiler (``profile``; it samples the running task's stack every 10 ms)
    is off, the event-loop health tick is 1 s instead of 20 ms, and the
    system monitor runs every 5 s.  Measured with ``measure.throughput``
    (16 one-second trials on 2 cores): with the profiler on, the cluster
    took 1.14-1.39x the process pool's time; with the defaults otherwise and
    the profiler off, 1.02-1.22x (trials 3-5% slower than in the pool); with
    these settings, 1.02x (run of 2026-12-02 09:46 UTC); a trial run that
    also slowed the memory monitor and turned work stealing off was at
    0.95-1.01x.  Needs the
    ``distributed`` package (``pip install fastnn[dask]``).  Code written for
    this runs unchanged on a real cluster: ``distributed.Client(address).get_executor()``.
    """
    try:
        import dask
        import distributed
    except ImportError:
        raise ImportError("executor: a Dask cluster needs the distributed package; "
                          "pip install distributed (or fastnn[dask])") from None
    if n_workers is None:
        n_workers = available_cores()
    # Dask sets its "pre-spawn" variables before a worker's interpreter
    # starts (its default holds OMP, MKL and OpenBLAS): add Numba's to them.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.update(ONE_THREAD_ENV)
    with dask.config.set({"distributed.worker.profile.enabled": bool(profile),
                          "distributed.admin.tick.interval": "1s",
                          "distributed.admin.system-monitor.interval": "5s",
                          "distributed.nanny.pre-spawn-environ": environ}):
        with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                      processes=True, dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            # As the pool's initializer: fastnn and BLAS told one thread too.
            client.run(limit_threads)
            yield client.get_executor()


def check_executor(executor):
    """Raise unless ``executor`` is something a search can run trials on (no side effects)."""
    if executor is None:
        return
    if isinstance(executor, str):
        if executor not in ("serial", "processes"):
            raise ValueError(f"executor: expected None, 'serial', 'processes' or a "
                             f"concurrent.futures.Executor, got {executor!r}")
        return
    if isinstance(executor, concurrent.futures.Executor):
        return
    if callable(getattr(executor, "get_executor", None)) or callable(getattr(executor, "submit", None)):
        return
    raise TypeError(f"executor: expected None, 'serial', 'processes' or a "
                    f"concurrent.futures.Executor, got {type(executor).__name__}")


def resolve_executor(executor):
    """``(executor or None, owned)``: ``owned`` when the search must shut it down."""
    check_executor(executor)
    if executor is None or executor == "serial":
        return None, False
    if executor == "processes":
        return process_pool(), True
    if isinstance(executor, concurrent.futures.Executor):
        return executor, False
    if callable(getattr(executor, "get_executor", None)):    # a distributed.Client
        return executor.get_executor(), False
    return executor, False
