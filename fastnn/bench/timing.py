"""Timing that survives a noisy, shared machine, and peak extra memory.

``time_interleaved`` times several implementations of one kernel on one
input together.  Each is a zero-argument call made here, or a ``timer``:
an object with ``warm(seconds)`` and ``sample(repeat)`` that runs the calls
somewhere else (the PyTorch worker process, ``worker.py``) with the same
``warm`` and ``sample`` functions as below.

1. warm-up outside the timed region (each call at least once more after the
   correctness check that already ran it, until ~20 ms have passed; a slow
   call just made by the memory measurement counts as that warm-up);
2. calibration: a call shorter than ``sample_s`` is repeated ``inner``
   times per sample so the clock's resolution and Python's loop overhead do
   not dominate; a sample's time is divided by ``inner``;
3. rounds: each round takes one sample of every implementation, the order
   rotated from round to round, so slow drift of the machine (another
   process, frequency, the page cache) hits every implementation alike;
4. as many rounds as fit in ``budget_s`` of timed calls, at least
   ``min_rounds``;
5. after a sample of calls of a millisecond or more, a pause of ``settle_s``
   (10 ms) before the next sample: OpenMP worker threads (PyTorch's, Numba's)
   spin for several milliseconds after a parallel region, and OpenBLAS's for
   up to 0.1 s (the CLI shortens that with OPENBLAS_THREAD_TIMEOUT); a
   spinning pool left by one contender steals a core from the next one
   (measured here: NumPy's 256x1024x1024 GEMM 8.3 ms right after a PyTorch
   GEMM, 5.3 ms after a 10 ms pause).  Short calls are repeated in a
   sample, so the first call's disturbance is diluted and they need no pause,
   unless their timer asks for one (``settle_s`` attribute): PyTorch's
   worker does, as its OpenMP threads under the default wait policy spin
   for about 10 ms after any parallel region, however short the call.

6. a case whose fastest call takes under ``prime_below_s`` (5 ms: it can
   run from the caches) is timed warm: each sample starts with one untimed
   call of the same implementation, so that the one timed before it (its
   outputs, or PyTorch's worker reading its own copy of the inputs) has not
   left it cold caches.  Measured on the project machine, without it:
   batch norm 4096x1024 with out= 1.2-1.6 ms next to PyTorch's worker
   against 0.7-1.1 ms when PyTorch shared the inputs in-process.  Slower
   cases stream from memory whatever ran before.

The garbage collector is off while timing.  Results are per-call seconds:
min, median and max over the rounds.  Medians are what the tables compare.

The clock is an argument (``clock=``, default ``time.perf_counter``), and
so is ``sleep``: tests drive the whole procedure with a fake clock.

``peak_extra_bytes`` runs one call under ``tracemalloc`` and reports the
peak of traced memory beyond what the call leaves allocated (its outputs):
the temporaries a kernel needs.  NumPy's and Numba's array allocations are
traced; PyTorch's allocator is not, so its figure is unknown.
"""

import gc
import math
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field


@dataclass
class Timing:
    samples: list = field(default_factory=list)   # seconds per call, one per round
    inner: int = 1                                # calls per sample

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def min(self):
        return min(self.samples)

    @property
    def max(self):
        return max(self.samples)

    @property
    def rounds(self):
        return len(self.samples)


def warm(call, seconds, clock=time.perf_counter):
    """Call until ``seconds`` have passed (at least once); return the last call's time."""
    deadline = clock() + seconds
    while True:
        start = clock()
        call()
        elapsed = clock() - start
        if clock() >= deadline:
            return elapsed


def sample(call, repeat, clock=time.perf_counter, prime=False):
    """Seconds per call of ``repeat`` back-to-back calls (after one untimed call if ``prime``)."""
    if prime:
        call()
    if repeat == 1:
        start = clock()
        call()
        return clock() - start
    loop = range(repeat)
    start = clock()
    for _ in loop:
        call()
    return (clock() - start) / repeat


class LocalCall:
    """A timer for a call made in this process."""

    def __init__(self, call, clock=time.perf_counter):
        self.call, self.clock = call, clock

    def warm(self, seconds):
        return warm(self.call, seconds, self.clock)

    def sample(self, repeat, prime=False):
        return sample(self.call, repeat, self.clock, prime)


def _timer(implementation, clock):
    if hasattr(implementation, "sample"):
        return implementation
    return LocalCall(implementation, clock)


def time_interleaved(calls, budget_s=0.5, min_rounds=5, max_rounds=200,
                     sample_s=2e-3, warmup_s=0.02, warmed=None, settle_s=0.01,
                     prime_below_s=5e-3, clock=time.perf_counter, sleep=time.sleep):
    """Time every ``calls[name]`` (zero-argument functions or timers); ``{name: Timing}``.

    ``warmed``: ``{name: seconds}`` of a call just made outside this function
    (e.g. the memory measurement); a call slower than ``warmup_s`` listed
    there is not warmed again, which saves a whole call at large sizes.
    """
    names = list(calls)
    if not names:
        return {}
    timers = {name: _timer(calls[name], clock) for name in names}
    warmed = warmed or {}
    per_call = {}
    for name in names:
        if warmed.get(name, 0.0) >= warmup_s:
            per_call[name] = warmed[name]
        else:
            per_call[name] = max(timers[name].warm(warmup_s), 1e-7)
    inner = {name: max(1, min(10_000, math.ceil(sample_s / per_call[name]))) for name in names}
    settle = {name: max(settle_s if per_call[name] >= 1e-3 else 0.0,
                        getattr(timers[name], "settle_s", 0.0)) for name in names}
    # The budget is timed work; the pauses come on top, so that they do not
    # cut the rounds (and the median's stability) of millisecond-scale cases.
    round_s = sum(per_call[name] * inner[name] for name in names)
    rounds = int(max(min_rounds, min(max_rounds, budget_s // max(round_s, 1e-9))))
    prime = min(per_call.values()) < prime_below_s
    timings = {name: Timing(inner=inner[name]) for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                timings[name].samples.append(timers[name].sample(inner[name], prime))
                if settle[name]:
                    sleep(settle[name])
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def peak_extra_bytes(call, clock=time.perf_counter):
    """``(bytes, seconds)``: peak bytes one ``call()`` allocates beyond what it
    returns (NumPy/Numba arrays), and the call's wall time."""
    # No gc.collect() first: the peak does not depend on cyclic garbage, and
    # with PyTorch loaded a collection costs ~0.1 s per measurement.
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        start = clock()
        result = call()
        elapsed = clock() - start
        after, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        if not already_tracing:
            tracemalloc.stop()
    return max(0, peak - max(after, before)), elapsed
