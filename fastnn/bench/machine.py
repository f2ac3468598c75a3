"""What the numbers were measured on: CPU, memory, versions, BLAS, environment.

Everything here goes into ``--json`` and the report's header, so that two
runs can be told apart.  The BLAS kernel that threadpoolctl reports matters:
an OpenBLAS forced to an older core type (``OPENBLAS_CORETYPE``) loses a
large share of its GEMM rate.
"""

import datetime
import os
import platform
import subprocess
import sys
import time

# Environment variables that change what a benchmark measures.
_RELEVANT_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                 "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS",
                 "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR",
                 "NUMBA_OPT", "FASTNN_BACKEND")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cache_sizes():
    """``{"L1d": "64 KiB", ...}`` from sysfs where Linux provides it."""
    sizes = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(path, "size")) as f:
                size = f.read().strip()
            suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
            sizes[f"L{level}{suffix}"] = size
    except OSError:
        pass
    return sizes


def _blas():
    """NumPy's BLAS as threadpoolctl sees it: library, version, kernel, threads."""
    try:
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl inspects)
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    found = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    for lib in found:                   # prefer the one shipped with NumPy
        if "numpy" in (lib.get("filepath") or ""):
            return _blas_entry(lib)
    return _blas_entry(found[0]) if found else None


def _blas_entry(lib):
    return {key: lib.get(key) for key in
            ("internal_api", "version", "architecture", "threading_layer", "num_threads",
             "filepath")}


def _version(module_name):
    try:
        module = __import__(module_name)
    except ImportError:
        return None
    return getattr(module, "__version__", "?")


def _git_commit():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.isdir(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        changes = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "fastnn"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = head.stdout.strip()
    if commit and changes.stdout.strip():
        commit += "+uncommitted changes"       # figures of code no commit holds
    return commit or None


def describe(torch_loaded=False):
    """The machine and software description, JSON-serializable."""
    from .contenders import max_threads
    versions = {"python": platform.python_version(), "numpy": _version("numpy"),
                "numba": _version("numba"), "fastnn": _version("fastnn"),
                "threadpoolctl": _version("threadpoolctl")}
    if torch_loaded or "torch" in sys.modules:
        versions["torch"] = _version("torch")
    try:
        import numba
    except ImportError:
        threading_layer = None
    else:
        try:
            threading_layer = numba.threading_layer()
        except ValueError:          # no parallel kernel has run yet in this process
            threading_layer = f"{numba.config.THREADING_LAYER} (not yet launched)"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpus_usable": max_threads(),
        "cpus_total": os.cpu_count(),
        "caches": _cache_sizes(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "versions": versions,
        "fastnn_commit": _git_commit(),
        "blas": _blas(),
        "numba_threading_layer": threading_layer,
        "environment": {name: os.environ[name] for name in _RELEVANT_ENV if name in os.environ},
    }


def _process_cpu_s(pid):
    """User + system CPU seconds of a live process, from /proc; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# CPUs' worth of other processes' work (and hypervisor steal) from which a
# measurement is marked as taken on a shared machine.
CONTENDED_CPUS = 0.25


class BusyMeter:
    """How much of the machine other processes used while we measured.

    On a shared machine another process's work slows every figure; this
    says by how much the machine was contended.  From ``/proc/stat`` (whole
    machine: busy and hypervisor-steal time) and ``os.times`` (this process
    and its finished children): the CPUs other processes kept busy on
    average, and the CPUs the hypervisor took.  None where /proc is missing.
    """

    def __init__(self):
        self.start = self._snapshot()
        self.helpers = {}               # pid -> its CPU seconds when added

    def add_process(self, pid):
        """Count a helper process of ours (PyTorch's worker) as our own work, not contention."""
        self.helpers[pid] = _process_cpu_s(pid) or 0.0

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        own = os.times()
        return {"busy_s": (user + nice + system + irq + softirq) / tick, "steal_s": steal / tick,
                "own_s": own.user + own.system + own.children_user + own.children_system,
                "wall_s": time.perf_counter()}

    def result(self):
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        wall = max(end["wall_s"] - self.start["wall_s"], 1e-9)
        busy = end["busy_s"] - self.start["busy_s"]
        own = end["own_s"] - self.start["own_s"]
        for pid, start_s in self.helpers.items():
            own += max(0.0, (_process_cpu_s(pid) or start_s) - start_s)
        return {"wall_s": wall, "own_cpus": own / wall,
                "other_cpus": max(0.0, busy - own) / wall,
                "steal_cpus": (end["steal_s"] - self.start["steal_s"]) / wall}
