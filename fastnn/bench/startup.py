"""Start-up costs, each measured in a fresh Python process.

- ``import fastnn``: wall time of the import in a new interpreter (NumPy's own
  import, which fastnn pulls in, is shown beside it); median of 3 processes.
  ``import fastnn`` must compile nothing, so this stays small.
- warm-cache first call: a new process whose on-disk JIT cache is already
  filled (the bench fills it with ``fastnn.warmup()`` first) times its very
  first kernel call (batch-norm forward, float32, 4096 x 64), of which the
  import of the backend modules (``fastnn.backends()``: Numba's own import
  for the numba backend) is shown apart, and the ``fastnn.warmup()`` of the
  backend, which then only loads every compiled kernel from the cache.
- cold compile: a new process with ``NUMBA_CACHE_DIR`` pointing to an empty
  temporary directory times ``fastnn.warmup(backend)``: compiling every
  kernel signature from nothing.  Minutes for the Numba backend, so
  ``--quick`` skips it (``--full`` or ``--cold-compile`` run it).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

_IMPORT_CODE = """
import json, time
start = time.perf_counter()
import numpy
numpy_s = time.perf_counter() - start
import fastnn
total_s = time.perf_counter() - start
print(json.dumps({"numpy_s": numpy_s, "fastnn_s": total_s}))
"""

_FIRST_CALL_CODE = """
import json, sys, time
import numpy as np
import fastnn
backend = sys.argv[1]
x = np.random.default_rng(0).standard_normal((4096, 64)).astype(np.float32)
start = time.perf_counter()
fastnn.backends()                  # imports every backend module (Numba itself for numba)
load_s = time.perf_counter() - start
fastnn.batchnorm_forward(x, backend=backend)
first_s = time.perf_counter() - start
start = time.perf_counter()
fastnn.batchnorm_forward(x, backend=backend)
second_s = time.perf_counter() - start
start = time.perf_counter()
fastnn.warmup([backend])
warmup_s = time.perf_counter() - start
print(json.dumps({"first_call_s": first_s, "load_backends_s": load_s,
                  "second_call_s": second_s, "warmup_s": warmup_s}))
"""

_COLD_CODE = """
import json, sys, time
start = time.perf_counter()
import fastnn
fastnn.warmup([sys.argv[1]])
print(json.dumps({"cold_warmup_s": time.perf_counter() - start}))
"""


def _run(code, *args, env=None, timeout=600):
    completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                               text=True, env=env, timeout=timeout)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"subprocess failed: {last}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def import_time(repeats=3):
    runs = [_run(_IMPORT_CODE) for _ in range(repeats)]
    return {"import_fastnn_s": statistics.median(r["fastnn_s"] for r in runs),
            "import_numpy_s": statistics.median(r["numpy_s"] for r in runs),
            "processes": repeats}


def warm_first_call(backend):
    return _run(_FIRST_CALL_CODE, backend)


def cold_compile(backend):
    with tempfile.TemporaryDirectory(prefix="fastnn-bench-cache-") as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        return _run(_COLD_CODE, backend, env=env, timeout=1800)


def measure(backends, cold=False, progress=None):
    """Start-up figures: ``{"import": {...}, "backends": {name: {...}}}``.

    ``backends``: the fastnn backends to measure first calls (and, with
    ``cold``, compile times) for; the NumPy backend compiles nothing and is
    left out.  A failure is recorded as ``{"error": message}``, not raised.
    """
    figures = {"import": None, "backends": {}}
    try:
        figures["import"] = import_time()
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        figures["import"] = {"error": str(exc)}
    for name in backends:
        if name == "numpy":
            continue
        entry = figures["backends"][name] = {}
        try:
            entry.update(warm_first_call(name))
            if cold:
                if progress:
                    progress(f"cold compile of fastnn[{name}] in a fresh cache "
                             f"(minutes)")
                entry.update(cold_compile(name))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            entry["error"] = str(exc)
    return figures
