"""Runs a benchmark: roofline, start-up, then every case, checked then timed.

A case is one kernel at one size, dtype and thread count.  For each case:

0. the roofline (``roofline.measure``) at start and again at the end, the
   better of each figure kept;
1. inputs are built once per (kernel, size, dtype) with a fixed seed, and the
   reference outputs computed by the NumPy baseline in float64; PyTorch's
   worker process (``worker.py``) builds the same inputs itself meanwhile;
2. per thread count, every contender gets its own copies of the arrays the
   kernel updates in place, runs once (compiling if it must), and its
   outputs are compared with the reference (PyTorch's are sent back by its
   worker); a contender that fails the comparison or raises is reported
   and not timed;
3. the contenders that passed are timed together, interleaved
   (``timing.time_interleaved``: PyTorch's samples are taken by its worker
   in turn with the others), and their peak extra memory is measured with
   tracemalloc once per case (first thread count);
   While a case is timed, ``machine.BusyMeter`` records how many CPUs other
   processes kept busy (``other_cpus``): a case timed on a shared machine
   is marked, and the targets do not judge it (with two CPUs, PyTorch's
   two-thread kernels wait milliseconds for their second thread when
   another process holds a CPU: 47 ms for a tiny batch norm, measured here);
4. derived figures: speedups against the NumPy baseline and PyTorch, GB/s
   from the kernel's minimum bytes (``cases``) and its share of the DRAM
   triad, or GFLOP/s and its share of the measured GEMM rate; then the
   targets' verdicts (``targets``).

Everything ends up in one JSON-serializable dict (``run``'s result).
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import cases, contenders as contenders_mod, environment, roofline, startup, timing
from . import targets as targets_mod
from .machine import BusyMeter, describe
from .worker import TorchWorker, WorkerError, describe as describe_worker


@dataclass
class Config:
    kernels: list                       # kernel names, in order
    sizes: dict                         # kernel name -> list of size names
    dtypes: list = field(default_factory=lambda: ["float32"])
    threads: list = field(default_factory=list)
    backends: list = None               # fastnn backends (None: every available one)
    use_torch: bool = True
    budget_s: float = 0.4               # timing budget per case and thread count
    min_rounds: int = 5
    memory: bool = True
    startup: bool = True
    cold_compile: bool = False
    roofline: bool = True
    mode: str = "quick"
    # The reference backend (fastnn[numpy]) at large sizes: seconds per call
    # and not meant to be fast, so --quick leaves it out there.
    reference_at_large: bool = True
    targets: object = None              # targets.Targets, or None: no verdicts
    targets_note: str = None            # why there are no targets, if there are none
    clock: object = time.perf_counter   # this process's clock (tests pass a fake one)


def _fresh_copies(kernel, inputs):
    own = dict(inputs)
    for name in kernel.mutable:
        own[name] = inputs[name].copy()
    return own


def _describe_error(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


class _TorchPeer:
    """PyTorch's rows through its worker: one case prepared at a time, restarted if it dies."""

    def __init__(self, worker, meter=None):
        self.worker = worker
        self.meter = meter              # counts the worker's CPU time as the run's own
        if meter is not None:
            meter.add_process(worker.process.pid)
        self.pending = None             # (case id, key) of a prepare sent, not yet received
        self.failure = None             # why the worker could not be restarted

    def start(self, kernel, size, dtype, threads, variant=None):
        """Ask the worker to build and run the case; the reply is read by ``finish``."""
        self.failure = None
        if not self.worker.alive():
            self.worker.close()
            try:
                self.worker = TorchWorker(self.worker.env)
                if self.meter is not None:
                    self.meter.add_process(self.worker.process.pid)
            except WorkerError as exc:
                self.failure = str(exc)
                return
        case = self.worker.new_case()
        try:
            self.worker.send("prepare", case=case, kernel=kernel.name, size=size, dtype=dtype,
                             threads=threads, **({"variant": variant} if variant else {}))
        except WorkerError as exc:
            self.failure = str(exc)
            return
        self.pending = (case, (kernel.name, size.name, dtype, threads, variant))

    def finish(self, kernel, size, dtype, threads, variant=None):
        """``(timer, outputs)`` of the case ``start`` sent (or, for another
        variant, of one prepared now); WorkerError if it failed."""
        key = (kernel.name, size.name, dtype, threads, variant)
        if self.pending is None or self.pending[1] != key:
            if self.failure:
                raise WorkerError(self.failure)
            self.start(kernel, size, dtype, threads, variant)
            if self.pending is None:
                raise WorkerError(self.failure)
        case, _ = self.pending
        self.pending = None
        outputs = self.worker.receive()
        return self.worker.timer(case), outputs

    def close(self):
        self.worker.close()


def _run_case(kernel, size, dtype, threads, contenders, inputs, reference, config,
              measure_memory, torch_peer=None):
    """Result rows (one per contender) of one case."""
    rows = []
    calls = {}
    if not config.reference_at_large and size.tier == "large":
        contenders = [c for c in contenders if c.backend != contenders_mod.REFERENCE_BACKEND]
    base = {"kernel": kernel.name, "size": size.name, "label": size.label,
            "shape": list(size.shape), "dtype": dtype, "threads": threads,
            "min_bytes": kernel.min_bytes(size.shape, np.dtype(dtype).itemsize),
            "flops": kernel.flops(size.shape)}
    for contender in contenders:
        if not contender.applies_to(kernel):
            continue
        row = dict(base, contender=contender.name, kind=contender.kind,
                   backend=contender.backend, variant=contender.variant, status="ok",
                   max_rel_error=None)
        try:
            if contender.kind == "torch" and torch_peer is not None:
                call, named = torch_peer.finish(kernel, size, dtype, threads,
                                                contender.variant)
            else:
                call, outputs = contender.prepare(kernel, _fresh_copies(kernel, inputs))
                result = call()
                named = outputs(result) if outputs is not None else None
                del result
            if named is not None:
                error, where = cases.compare(named, reference, dtype)
                row["max_rel_error"] = error
                if not cases.within_tolerance(error, dtype):
                    row["status"] = f"wrong: {where} off by {error:.2g} (relative)"
            del named
        except WorkerError as exc:
            row["status"] = f"error: {exc}"
        except Exception as exc:        # a broken contender is reported, not fatal
            row["status"] = f"error: {_describe_error(exc)}"
        rows.append(row)
        if row["status"] == "ok":
            calls[contender.name] = call
    # Memory first: its call also warms the contender up (caches, page
    # mappings), so slow calls need no separate warm-up before timing.
    warmed = {}
    for row in rows:
        if measure_memory and row["status"] == "ok" and row["kind"] in ("baseline", "fastnn"):
            row["extra_bytes"], warmed[row["contender"]] = \
                timing.peak_extra_bytes(calls[row["contender"]], clock=config.clock)
    meter = BusyMeter()
    if torch_peer is not None and torch_peer.worker.alive():
        meter.add_process(torch_peer.worker.process.pid)
    try:
        timings = timing.time_interleaved(calls, budget_s=config.budget_s,
                                          min_rounds=config.min_rounds, warmed=warmed,
                                          clock=config.clock)
    except WorkerError as exc:          # the worker died while timing: time the others again
        torch_rows = [r for r in rows if r["kind"] == "torch"]
        for row in torch_rows:
            row["status"] = f"error: {exc}"
            calls.pop(row["contender"], None)
        timings = timing.time_interleaved(calls, budget_s=config.budget_s,
                                          min_rounds=config.min_rounds, warmed=warmed,
                                          clock=config.clock)
    busy = meter.result()
    for row in rows:
        measured = timings.get(row["contender"])
        if measured is not None:
            row.update(median_s=measured.median, min_s=measured.min, max_s=measured.max,
                       rounds=measured.rounds, inner=measured.inner)
        if busy is not None:
            row["other_cpus"] = busy["other_cpus"] + busy["steal_cpus"]
    return rows


def _derive(rows, roofs):
    """Speedups and roofline shares, in place."""
    by_case = {}
    for row in rows:
        by_case.setdefault((row["kernel"], row["size"], row["dtype"], row["threads"]),
                           []).append(row)
    for case_rows in by_case.values():
        medians = {r["contender"]: r.get("median_s") for r in case_rows}
        numpy_s = medians.get(contenders_mod.BASELINE)
        # Several PyTorch rows (default and fused Adam): the faster one counts.
        torch_s = min((r["median_s"] for r in case_rows
                       if r["kind"] == "torch" and r.get("median_s")), default=None)
        for row in case_rows:
            median = row.get("median_s")
            if median is None:
                continue
            roof = roofs.get(row["threads"])
            if row["kind"] != "bound":
                row["vs_numpy"] = numpy_s / median if numpy_s else None
                row["vs_torch"] = torch_s / median if torch_s else None
            if row["min_bytes"] is not None:
                row["gbps"] = row["min_bytes"] / median / 1e9
                if roof:
                    row["of_roof"] = row["gbps"] / roof["triad_dram"]["gbps"]
            if row["flops"] is not None:
                row["gflops"] = row["flops"] / median / 1e9
                gemm = roof["gemm"].get(row["dtype"]) if roof else None
                if gemm:
                    row["of_roof"] = row["gflops"] / gemm["gflops"]


def count_cases(config):
    per_threads = sum(len(config.sizes[k]) for k in config.kernels) * len(config.dtypes)
    return per_threads * len(config.threads)


def _this_process(contenders, threads):
    """How the contenders of this process ran: one line for the report."""
    names = [c.name for c in contenders if c.kind != "torch"]
    try:
        import numba
        layer = numba.threading_layer()
    except ImportError:
        layer = "none (no numba)"
    except ValueError:                  # no parallel kernel has run
        layer = f"{numba.config.THREADING_LAYER} (not launched)"
    settings = []
    for name, (user, here) in environment.changed_by_fastnn().items():
        origin = {environment.WAIT_POLICY: "set by fastnn's numba backend for its pool",
                  "OPENBLAS_THREAD_TIMEOUT": "set by the bench",
                  "KMP_DUPLICATE_LIB_OK": "set by Numba"}.get(name, "changed in this process")
        settings.append(f"{name}={here} ({origin}; the user's: "
                        f"{'unset' if user is None else user})")
    policy = os.environ.get(environment.WAIT_POLICY)
    if environment.WAIT_POLICY not in environment.changed_by_fastnn():
        settings.append(f"{environment.WAIT_POLICY}={policy} (the user's)" if policy
                        else f"{environment.WAIT_POLICY} unset")
    return (f"{', '.join(names)}: this process (pid {os.getpid()}), "
            f"{'/'.join(map(str, threads))} thread(s) (fastnn.set_num_threads; NumPy's BLAS "
            f"through threadpoolctl), numba threading layer {layer}; " + ", ".join(settings))


def run(config, progress=lambda message, step=None, total=None: None):
    """Run the benchmark ``config`` describes; returns every figure as a dict."""
    started = time.perf_counter()
    probe = BusyMeter()
    time.sleep(0.3)
    busy = probe.result()
    if busy and busy["other_cpus"] > 0.5:
        progress(f"warning: other processes keep {busy['other_cpus']:.1f} CPU(s) busy; "
                 f"the figures will be slower and noisier than this machine can do")
    meter = BusyMeter()
    contenders, skipped, lacking = contenders_mod.make_contenders(config.backends,
                                                                  config.use_torch)
    how = {}
    torch_peer = None
    if any(c.kind == "torch" for c in contenders):
        progress("starting PyTorch's worker process")
        try:
            torch_peer = _TorchPeer(TorchWorker(), meter)
        except WorkerError as exc:
            contenders = [c for c in contenders if c.kind != "torch"]
            skipped[contenders_mod.TORCH] = f"its worker process failed: {exc}"
        else:
            how[contenders_mod.TORCH] = describe_worker(torch_peer.worker.info)
    try:
        return _run(config, progress, started, meter, contenders, skipped, lacking, how,
                    torch_peer)
    finally:
        if torch_peer is not None:
            torch_peer.close()


def _run(config, progress, started, meter, contenders, skipped, lacking, how, torch_peer):
    fastnn_names = list(dict.fromkeys(c.backend for c in contenders if c.kind == "fastnn"))
    result = {"config": {"mode": config.mode, "kernels": config.kernels, "sizes": config.sizes,
                         "dtypes": config.dtypes, "threads": config.threads,
                         "budget_s": config.budget_s, "min_rounds": config.min_rounds},
              "contenders": [c.name for c in contenders], "skipped": skipped,
              "lacking": lacking}
    if not config.reference_at_large and any(
            c.backend == contenders_mod.REFERENCE_BACKEND for c in contenders):
        skipped[f"fastnn[{contenders_mod.REFERENCE_BACKEND}] at large sizes"] = \
            "the reference backend is not meant to be fast; run it there with --full"

    if config.startup:
        # Fills the on-disk JIT cache, so the fresh processes below start warm.
        # (Without start-up figures each case compiles what it needs, untimed.)
        import fastnn
        progress("compiling / loading the JIT kernels (fastnn.warmup)")
        try:
            result["warmup_in_process_s"] = fastnn.warmup(fastnn_names) if fastnn_names else {}
        except Exception as exc:
            result["warmup_in_process_s"] = {"error": _describe_error(exc)}
        progress("start-up figures (fresh processes)")
        result["startup"] = startup.measure(fastnn_names, cold=config.cold_compile,
                                            progress=progress)

    roofs = {}
    if config.roofline:
        for threads in config.threads:
            progress(f"roofline: triad and GEMM at {threads} thread(s)")
            contenders_mod.set_threads(threads)
            roofs[threads] = roofline.measure(threads, config.dtypes,
                                              quick=config.mode == "quick")
    result["roofline"] = {str(t): figures for t, figures in roofs.items()}
    result["machine"] = describe()

    rows = []
    total, step = count_cases(config), 0
    for dtype in config.dtypes:
        for kernel_name in config.kernels:
            kernel = cases.KERNELS[kernel_name]
            for size_name in config.sizes[kernel_name]:
                size = kernel.size(size_name)
                runs_torch = torch_peer is not None and any(
                    c.kind == "torch" and c.applies_to(kernel) for c in contenders)
                if runs_torch:          # the worker builds its inputs while we build ours
                    torch_peer.start(kernel, size, dtype, config.threads[0])
                inputs = cases.case_inputs(kernel, size, dtype)
                reference = cases.reference_outputs(kernel, inputs)
                for index, threads in enumerate(config.threads):
                    step += 1
                    progress(f"{kernel.name} {size.name} {size.label} {dtype} "
                             f"{threads} thread(s)", step, total)
                    contenders_mod.set_threads(threads)
                    if runs_torch and index > 0:
                        torch_peer.start(kernel, size, dtype, threads)
                    rows.extend(_run_case(kernel, size, dtype, threads, contenders, inputs,
                                          reference, config, measure_memory=config.memory
                                          and index == 0, torch_peer=torch_peer))
                del inputs, reference
    if torch_peer is not None and torch_peer.worker.alive():
        torch_peer.worker.request("release")
    if config.roofline:
        for threads in config.threads:
            progress(f"roofline again at {threads} thread(s); the better of start and end counts")
            contenders_mod.set_threads(threads)
            again = roofline.measure(threads, config.dtypes, quick=config.mode == "quick")
            roofs[threads] = roofline.best_of(roofs[threads], again)
        result["roofline"] = {str(t): figures for t, figures in roofs.items()}
    contenders_mod.set_threads(max(config.threads))
    if torch_peer is not None:
        result["machine"]["versions"]["torch"] = torch_peer.worker.info["torch"]
    how["this process"] = _this_process(contenders, config.threads)
    result["how"] = how
    _derive(rows, roofs)
    # Memory is measured once per case; copy it to the rows of other thread counts.
    memory = {(r["kernel"], r["size"], r["dtype"], r["contender"]): r["extra_bytes"]
              for r in rows if "extra_bytes" in r}
    for row in rows:
        key = (row["kernel"], row["size"], row["dtype"], row["contender"])
        if "extra_bytes" not in row and key in memory:
            row["extra_bytes"] = memory[key]
    result["rows"] = rows
    if config.targets is not None:
        result["targets_file"] = config.targets.path
        result["targets"] = targets_mod.check(rows, config.targets)
        result["targets_unchecked"] = targets_mod.unchecked_backends(config.targets, rows)
    else:
        result["targets"] = []
        result["targets_note"] = config.targets_note
    result["failures"] = [r for r in rows if r["status"] != "ok"]
    result["contention"] = meter.result()
    result["elapsed_s"] = time.perf_counter() - started
    return result
