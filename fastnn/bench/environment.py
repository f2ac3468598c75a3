"""The user's environment as it was before fastnn and the bench changed it.

Two settings in the bench's own process are not the user's:

- ``OMP_WAIT_POLICY=PASSIVE``: fastnn's threaded backends (numba, c) set it
  when they are imported (``_registry.request_sleeping_threads``, unless the
  user chose a policy), so that their OpenMP threads sleep between kernels
  instead of spinning;
- ``OPENBLAS_THREAD_TIMEOUT``: ``python -m fastnn bench`` re-runs itself
  with it set (``cli._respawn``), so OpenBLAS's threads stop spinning soon
  after each call.

A peer library such as PyTorch must run under the user's settings, not
fastnn's: its worker process (``worker.py``) is started with
``user_environment()``.  The snapshot is taken when ``fastnn.bench`` is
first imported; the re-run child learns from ``ADDED_MARK`` which variables
its parent added.  If a threaded backend was imported before the snapshot
(fastnn used in-process before the bench), an ``OMP_WAIT_POLICY=PASSIVE``
in it is taken to be fastnn's: the user's own choice of PASSIVE is then
indistinguishable and is dropped too (``ambiguous()`` says so).
"""

import os

from .. import _registry

ADDED_MARK = "FASTNN_BENCH_ADDED_ENV"     # comma-separated names the bench's parent added
CHILD_MARK = "FASTNN_BENCH_CHILD"
WAIT_POLICY = "OMP_WAIT_POLICY"
FASTNN_WAIT_POLICY = _registry.WAIT_POLICY

_snapshot = dict(os.environ)
_policy_before_snapshot = _registry.sleeping_threads_requested()


def ambiguous():
    """True when the snapshot may hold fastnn's wait policy rather than the user's."""
    return _policy_before_snapshot and _snapshot.get(WAIT_POLICY) == FASTNN_WAIT_POLICY


def user_environment():
    """A copy of the environment as the user set it (fastnn's and the bench's additions removed)."""
    env = dict(_snapshot)
    for name in filter(None, env.pop(ADDED_MARK, "").split(",")):
        env.pop(name, None)
    env.pop(CHILD_MARK, None)
    if ambiguous():
        env.pop(WAIT_POLICY, None)
    return env


def changed_by_fastnn():
    """``{name: (the user's value or None, this process's value)}`` where they differ."""
    user = user_environment()
    changes = {}
    for name in sorted(set(user) | set(os.environ)):
        if name in (ADDED_MARK, CHILD_MARK):
            continue
        if user.get(name) != os.environ.get(name):
            changes[name] = (user.get(name), os.environ.get(name))
    return changes
