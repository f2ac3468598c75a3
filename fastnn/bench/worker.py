"""PyTorch's own process: the peer measured under its own defaults.

fastnn's process is not a neutral place for a peer library.  fastnn's threaded
backends set ``OMP_WAIT_POLICY=PASSIVE`` for their OpenMP threads, and an
OpenMP runtime reads the variable once, when it loads: PyTorch's, loaded
into the same process, would run under fastnn's policy instead of its
default, its threads sleeping after every parallel region and woken again
for the next (measured on the project machine: batch norm 4096x1024 at
1.15-1.73 ms under PyTorch's default against 1.85-2.06 ms under PASSIVE;
tiny calls at times hundreds of microseconds or tens of milliseconds
instead of a few, when a woken thread waits for the hypervisor).  So
PyTorch runs here, in a worker process started with the user's environment
as it was before fastnn touched it (``environment.user_environment()``),
and never imports fastnn's backends.

The coordinator (``runner``) keeps the timing interleaved: for each round it
asks the worker for one sample of the case and waits for the figure, so
drift of the shared host hits every contender alike.  The worker builds the
case's inputs itself from the same seeds (``cases.case_inputs``), runs the
call once and sends its outputs back; the coordinator compares them with
its float64 reference like every other contender's, so a wrong PyTorch is
still caught.  It times itself with the same ``timing.warm`` and
``timing.sample`` as the coordinator, so the pipe's latency is not in the
figures.

Protocol: length-prefixed pickles over the worker's stdin and stdout (its
Python-level and C-level output go to stderr, which the coordinator keeps
for error messages).  Requests are ``(operation, arguments)``; every reply
is ``{"ok": value}`` or ``{"error": text}``.

    hello                                   -> how PyTorch runs: version, threads, env
    prepare case, kernel, size, dtype, threads[, variant] -> the outputs of one call
    warm case, seconds                      -> the last call's seconds
    sample case, repeat, prime              -> seconds per call
    release                                 -> frees the inputs
    quit

Test: ``benches/test_bench_tool.py`` runs a worker and checks its outputs,
its environment and a WRONG verdict.  It runs as part of
``python -m fastnn bench``.
"""

import gc
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile

from . import environment

_HEADER = struct.Struct("!Q")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Run from the directory that holds this fastnn, whatever the current directory.
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from fastnn.bench.worker import serve; serve()")
REPLY_TIMEOUT_S = 900       # a large case's input building and first call: seconds, not minutes
_REPORTED_ENV = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "MKL_NUM_THREADS",
                 "KMP_BLOCKTIME", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT")


def _send(stream, message):
    payload = pickle.dumps(message, protocol=5)
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_exactly(stream, count):
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(stream):
    (length,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return pickle.loads(_read_exactly(stream, length))


def _describe_error(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


# ----------------------------------------------------------------------------
# The worker's side

class _Server:
    def __init__(self, torch):
        self.torch = torch
        self.inputs_key = None
        self.inputs = None
        self.cases = {}                 # case id -> the prepared zero-argument call

    def hello(self):
        torch = self.torch
        info = torch.__config__.parallel_info()
        backend = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                        if line.startswith("ATen parallel backend")), "?")
        openmp = next((line.strip() for line in info.splitlines()
                       if line.startswith("OpenMP")), None)
        return {"pid": os.getpid(), "torch": torch.__version__,
                "default_threads": torch.get_num_threads(), "parallel_backend": backend,
                "openmp": openmp,
                "env": {name: os.environ[name] for name in _REPORTED_ENV if name in os.environ},
                "fastnn_backends_imported": sorted(
                    name for name in sys.modules if name.startswith("fastnn._backends."))}

    def prepare(self, case, kernel, size, dtype, threads, variant=None):
        from . import cases
        entry = cases.KERNELS[kernel]
        key = (kernel, size, dtype)
        if key != self.inputs_key:
            self.inputs_key, self.inputs, self.cases = None, None, {}   # free the last case first
            self.inputs = cases.case_inputs(entry, size, dtype)
            self.inputs_key = key
        self.torch.set_num_threads(threads)
        own = dict(self.inputs)
        for name in entry.mutable:
            own[name] = self.inputs[name].copy()
        if variant is not None:
            call, outputs = entry.torch(self.torch, own, variant=variant)
        else:
            call, outputs = entry.torch(self.torch, own)
        result = call()                     # the correctness run
        named = {name: value.copy() for name, value in outputs(result).items()}
        del result
        self.cases[case] = call
        return named

    def warm(self, case, seconds):
        from .timing import warm
        return warm(self.cases[case], seconds)

    def sample(self, case, repeat, prime=False):
        from .timing import sample
        enabled = gc.isenabled()
        gc.disable()
        try:
            return sample(self.cases[case], repeat, prime=prime)
        finally:
            if enabled:
                gc.enable()

    def release(self):
        self.inputs_key, self.inputs, self.cases = None, None, {}


def serve():
    """The worker's main loop (``python -c _BOOT``): answers requests until ``quit``."""
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                       # stray output (C or Python) goes to stderr
    sys.stdout = sys.stderr
    try:
        import torch
    except Exception as exc:            # reported to the coordinator, which skips PyTorch
        torch, import_error = None, _describe_error(exc)
    server = _Server(torch) if torch is not None else None
    while True:
        try:
            operation, arguments = _receive(channel_in)
        except EOFError:
            return
        if operation == "quit":
            return
        try:
            if server is None:
                raise RuntimeError(f"PyTorch cannot be imported: {import_error}")
            reply = {"ok": getattr(server, operation)(**arguments)}
        except Exception as exc:        # a failing case is reported, the worker lives on
            reply = {"error": _describe_error(exc)}
        _send(channel_out, reply)


# ----------------------------------------------------------------------------
# The coordinator's side

class WorkerError(RuntimeError):
    """The worker reported an error, died, or did not answer."""


class TorchWorker:
    """A PyTorch worker process and the requests the coordinator makes of it."""

    def __init__(self, env=None):
        self.env = environment.user_environment() if env is None else env
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, _ROOT], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, env=self.env)
        self._case_count = 0
        self._pending = None
        self.info = self.request("hello")

    def _stderr_tail(self):
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def send(self, operation, **arguments):
        """Send a request; its reply is read by ``receive`` (one request in flight)."""
        if self._pending is not None:
            raise WorkerError(f"a {self._pending} request is still unanswered")
        try:
            _send(self.process.stdin, (operation, arguments))
        except (BrokenPipeError, OSError):
            raise WorkerError(f"the PyTorch worker died: {self._stderr_tail()}") from None
        self._pending = operation

    def receive(self):
        operation, self._pending = self._pending, None
        ready, _, _ = select.select([self.process.stdout], [], [], REPLY_TIMEOUT_S)
        if not ready:
            self.close(kill=True)
            raise WorkerError(f"the PyTorch worker gave no answer to {operation} in "
                              f"{REPLY_TIMEOUT_S} s")
        try:
            reply = _receive(self.process.stdout)
        except (EOFError, OSError):
            self.process.wait()
            raise WorkerError(f"the PyTorch worker died (exit status "
                              f"{self.process.returncode}): {self._stderr_tail()}") from None
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply["ok"]

    def request(self, operation, **arguments):
        self.send(operation, **arguments)
        return self.receive()

    def alive(self):
        return self.process.poll() is None

    def new_case(self):
        self._case_count += 1
        return self._case_count

    def timer(self, case):
        return RemoteCall(self, case)

    def close(self, kill=False):
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                try:
                    _send(self.process.stdin, ("quit", {}))
                except OSError:
                    pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RemoteCall:
    """A timer (see ``timing.time_interleaved``) whose calls run in the worker."""

    # The pause after each sample: under the OpenMP runtime's default wait
    # policy PyTorch's threads spin after a parallel region (GOMP_SPINCOUNT,
    # 300000 turns), measured here at 4-11 ms of a core after one batch norm
    # of 4096x1024; the next contender would run on what is left.
    settle_s = 0.015

    def __init__(self, worker, case):
        self.worker, self.case = worker, case

    def warm(self, seconds):
        return self.worker.request("warm", case=self.case, seconds=seconds)

    def sample(self, repeat, prime=False):
        return self.worker.request("sample", case=self.case, repeat=repeat, prime=prime)


def describe(info):
    """One line for the report: how the worker ran PyTorch."""
    policy = info["env"].get(environment.WAIT_POLICY)
    policy = f"OMP_WAIT_POLICY={policy} (the user's)" if policy else \
        "OMP_WAIT_POLICY unset (the OpenMP runtime's default)"
    others = ", ".join(f"{k}={v}" for k, v in info["env"].items()
                       if k != environment.WAIT_POLICY)
    return (f"its own process (pid {info['pid']}), the user's environment: {policy}"
            + (f", {others}" if others else "")
            + f"; PyTorch {info['torch']}, ATen parallel backend {info['parallel_backend']}"
            + (f" ({info['openmp']})" if info.get("openmp") else "")
            + f", {info['default_threads']} thread(s) by default; inputs built there from "
              f"the same seeds, outputs checked here")

