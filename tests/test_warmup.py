"""``fastnn.warmup()`` compiles what users call: nothing compiles after it.

The proof runs in fresh processes sharing an empty Numba cache directory:
the first only calls ``fastnn.warmup()``; the second calls every sample of
the OpInfo table (both dtypes, every memory layout, with and without
``out=``, serial and parallel sizes) on the numba backend and then reads
Numba's own records: no entry point may have missed the cache (compiled),
none may hold a signature it does not declare, and no inner helper may
have been compiled on its own.  Signatures are checked, not timers.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .support import AVAILABLE_BACKENDS

REPOSITORY = Path(__file__).resolve().parents[1]

CALL_EVERY_SAMPLE = r"""
import json
import numpy as np
import numba
from numba.core.registry import CPUDispatcher

import fastnn
from fastnn._backends.numba import _jit
from tests.opinfo import OPS
from tests.support import LAYOUTS, copy_kwargs, relayout

calls = 0
for op in OPS:
    for dtype in (np.float32, np.float64):
        for sample in op.samples(dtype):
            for layout in (None,) + LAYOUTS:
                kwargs = copy_kwargs(sample.kwargs)
                writable = set(op.mutable(kwargs))
                if layout is not None:
                    for name, value in kwargs.items():
                        if isinstance(value, np.ndarray) and value.ndim > 0:
                            if layout == "readonly" and name in writable:
                                continue
                            kwargs[name] = relayout(value, layout)
                op.function(**kwargs, backend="numba")
                calls += 1

declared = {id(d): (d, sigs) for d, sigs in _jit.ENTRY_POINTS}
report = {"calls": calls, "threads": numba.get_num_threads(), "missed": [],
          "undeclared": [], "helpers": [], "entry_points": len(declared)}
for d, sigs in declared.values():
    name = d.py_func.__qualname__
    if d.stats.cache_misses:
        report["missed"].append([name, [str(s) for s in d.stats.cache_misses]])
    for signature in d.signatures:
        if tuple(signature) not in sigs:
            report["undeclared"].append([name, str(signature)])
import fastnn._backends.numba as package
import importlib, pkgutil
for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f"{package.__name__}.{info.name}")
    for value in vars(module).values():
        if isinstance(value, CPUDispatcher) and id(value) not in declared and value.signatures:
            report["helpers"].append(value.py_func.__qualname__)
print(json.dumps(report))
"""


def _python(code, cache_dir):
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY)] + ([environment["PYTHONPATH"]] if "PYTHONPATH" in environment else []))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, cwd=REPOSITORY, timeout=900)


@pytest.mark.skipif("numba" not in AVAILABLE_BACKENDS,
                    reason="numba unavailable (test_backends.py fails for that)")
def test_nothing_compiles_after_warmup(tmp_path):
    warm = _python("import fastnn; fastnn.warmup(['numba'])", tmp_path)
    assert warm.returncode == 0, warm.stderr
    run = _python(CALL_EVERY_SAMPLE, tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["calls"] > 1000 and report["entry_points"] > 10, report
    assert report["missed"] == [], f"compiled after warmup: {report['missed']}"
    assert report["undeclared"] == [], f"signatures not declared: {report['undeclared']}"
    assert report["helpers"] == [], f"helpers compiled on their own: {report['helpers']}"
