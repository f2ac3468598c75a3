"""Fixtures of the conformance suite: every available backend, both float dtypes.

``backend`` is parametrized over every backend ``fastnn.backends()`` reports
available at collection time (or those of FASTNN_TEST_BACKENDS, support.py), so a newly registered backend runs every test
here with no change to the suite.  Whether a backend that must exist does
exist is a test of its own (``test_backends.py``), not a skip.

Hypothesis profiles: ``fastnn`` (default, a modest number of examples so the
suite stays fast) and ``thorough``; pick one with FASTNN_HYPOTHESIS_PROFILE.
"""

import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastnn

from . import oracle
from .support import FLOAT_DTYPES, TESTED_BACKENDS

# deadline=None: a first call may JIT-compile a kernel signature (about a second).
settings.register_profile("fastnn", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("FASTNN_HYPOTHESIS_PROFILE", "fastnn"))

# On a failure hypothesis writes a patch with libcst, whose import warns
# (DeprecationWarning from mypy_extensions); under filterwarnings=error that
# becomes an INTERNALERROR that hides the failure itself.  Import it now, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass


@pytest.fixture(scope="module", params=TESTED_BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="module", params=TESTED_BACKENDS + ["oracle"])
def impl(request):
    """A function getter: the public function on one backend, or the oracle's."""
    name = request.param
    if name == "oracle":
        return lambda function: getattr(oracle, function)
    return lambda function: (lambda *args, **kwargs: getattr(fastnn, function)(
        *args, **kwargs, backend=name))


@pytest.fixture(scope="module", params=FLOAT_DTYPES, ids=lambda d: d.name)
def dtype(request):
    return request.param


@pytest.fixture
def restore_threads():
    """Put the thread count back after a test that changes it."""
    threads = fastnn.get_num_threads()
    yield
    fastnn.set_num_threads(threads)


@pytest.fixture
def restore_backend():
    """Put the process-wide backend back after a test that changes it."""
    name = fastnn.get_backend()
    yield
    fastnn.set_backend(name)


def pytest_report_header(config):
    lines = [f"fastnn backends: {fastnn.backends()}",
             f"numpy {np.__version__}"]
    try:
        import numba
        lines.append(f"numba {numba.__version__}, threads {fastnn.get_num_threads()}")
    except ImportError:
        pass
    return lines
