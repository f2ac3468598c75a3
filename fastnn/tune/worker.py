"""What runs where a trial runs: one call of the objective, made safe.

``run_trial(objective, params, budget, timeout)`` calls ``objective(params)``
(or ``objective(params, budget)`` for successive halving) and returns a
plain dict -- ``status``, ``score``, ``metrics``, ``error``, ``seconds`` --
never raising for the objective's own failures: an exception, a score that
is not a finite number, metrics that are not JSON data, or the per-trial
``timeout`` all come back as ``status="failed"`` with the reason in
``error``.  Only ``KeyboardInterrupt`` (and other ``BaseException``s such as
``SystemExit``) propagate, so that Ctrl-C stops the search.

The timeout interrupts the objective with SIGALRM when the trial runs in a
process's main thread (serial searches, process-pool workers).  Elsewhere
(a Dask worker's task threads) signals cannot reach it: the objective then
runs in a helper thread that is abandoned when the time is up; it keeps its
core until it returns by itself, since Python cannot stop a thread.

The thread limits of a process-pool worker (``ONE_THREAD_ENV``) are in its
environment from the moment its interpreter starts (``executors.py`` sees
to it), since unpickling ``run_trial`` already imports fastnn and NumPy.

Tests: ``tests/test_tune_failures.py``.
"""

import math
import numbers
import os
import signal
import threading
import time

# Read by OpenMP, OpenBLAS, MKL, BLIS, Accelerate, numexpr and Numba when
# they load; a worker process gets them in its environment before it starts.
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


class TrialTimeout(TimeoutError):
    """Raised inside an objective that ran past the search's ``timeout``."""


def limit_threads():
    """Initializer of process-pool workers: one kernel thread in this process.

    The environment (``ONE_THREAD_ENV``) already holds the libraries that
    read it at load time; this also tells fastnn and any BLAS already
    loaded, for libraries a worker's main module may have imported first.
    """
    os.environ.update(ONE_THREAD_ENV)
    try:
        import fastnn
        fastnn.set_num_threads(1)
    except ImportError:     # pragma: no cover - fastnn is what ships this module
        pass


def _plain(value):
    """``value`` as plain JSON data (NumPy scalars and arrays converted), or TypeError."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"metric keys must be strings, got {key!r}")
            out[key] = _plain(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    tolist = getattr(value, "tolist", None)     # NumPy arrays and scalars
    if callable(tolist):
        return _plain(tolist())
    raise TypeError(f"expected JSON data, got {type(value).__name__}")


def _score_and_metrics(value):
    if isinstance(value, dict):
        if "score" not in value:
            raise ValueError(f"objective returned a dict without a 'score' key "
                             f"(keys: {sorted(map(str, value))})")
        metrics = {key: item for key, item in value.items() if key != "score"}
        score = value["score"]
    else:
        score, metrics = value, {}
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise TypeError(f"objective returned a score of type {type(score).__name__}, "
                        f"expected a number")
    score = float(score)
    if not math.isfinite(score):
        raise ValueError(f"objective returned a non-finite score ({score!r})")
    try:
        metrics = _plain(metrics)
    except TypeError as exc:
        raise TypeError(f"objective returned metrics that are not JSON data: {exc}") from None
    return score, metrics


def _on_alarm(signum, frame):
    raise TrialTimeout("alarm")


def _call_with_alarm(call, timeout):
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def _call_in_thread(call, timeout):
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as exc:    # handed to the caller, who re-raises it
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="fastnn-tune-trial", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TrialTimeout("thread")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _call(call, timeout):
    if timeout is None:
        return call()
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _call_with_alarm(call, timeout)
    return _call_in_thread(call, timeout)


def run_trial(objective, params, budget=None, timeout=None):
    """One trial; see the module docstring.  Returns a dict of plain data."""
    start = time.perf_counter()
    if budget is None:
        def call():
            return objective(params)
    else:
        def call():
            return objective(params, budget)
    try:
        score, metrics = _score_and_metrics(_call(call, timeout))
    except TrialTimeout:
        return {"status": "failed", "score": None, "metrics": {},
                "error": f"TrialTimeout: exceeded the timeout of {timeout:g} s",
                "seconds": time.perf_counter() - start}
    except Exception as exc:
        return {"status": "failed", "score": None, "metrics": {},
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - start}
    return {"status": "ok", "score": score, "metrics": metrics, "error": None,
            "seconds": time.perf_counter() - start}
