"""``python -m fastnn bench``: options, progress display, JSON and plot output.

``main(argv) -> exit code``: 0 when every contender produced correct output,
1 when one was wrong or raised (the report says which), 2 on a usage error.
Missed performance targets are reported, never an error.

OpenBLAS worker threads spin for about 0.1 s after each call and steal a
core from whatever runs next (Numba's or PyTorch's threads) when benchmarks
interleave.  The setting that stops it, ``OPENBLAS_THREAD_TIMEOUT``, is only
read when OpenBLAS loads, which ``import fastnn`` (through NumPy) has already
done; so unless the variable is set, the bench re-runs itself once in a
child process that has it, and tells the child it added it, so that
PyTorch's worker still starts with the user's own environment
(``environment.py``).
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time

from . import environment

OPENBLAS_TIMEOUT = "4"      # 2**4 cycles: workers sleep at once after a call

QUICK = {"budget_s": 0.4, "min_rounds": 3}
FULL = {"budget_s": 1.5, "min_rounds": 10}


def _parser():
    from .cases import FAMILIES, KERNELS
    parser = argparse.ArgumentParser(
        prog="python -m fastnn bench",
        description="Time every fastnn kernel on every available backend side by side with "
                    "idiomatic NumPy and (when installed) PyTorch, against the machine's "
                    "measured memory bandwidth and GEMM rate.",
        epilog=f"kernels: {', '.join(KERNELS)} (or a family: {', '.join(FAMILIES)}; "
               "an exact kernel name wins over a family: 'cross_entropy*' selects them all; "
               "shell-style patterns work). sizes: tiny, small, medium, large, their -nchw "
               "forms for batch norm, or a label such as 4096x1024 (--list shows all).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="the default: the sizes of the targets, short timing, the numpy "
                           "reference backend left out at large sizes (about a minute)")
    mode.add_argument("--full", action="store_true",
                      help="every size and contender, longer timing, cold compile time "
                           "(ten minutes or more)")
    parser.add_argument("--kernels", help="comma-separated kernels or families (default: all)")
    parser.add_argument("--sizes", help="comma-separated size names, tiers or labels")
    parser.add_argument("--dtype", default="float32",
                        help="float32 (default), float64, or both as float32,float64")
    parser.add_argument("--threads",
                        help="comma-separated thread counts, e.g. 1,2 (default: every usable CPU)")
    parser.add_argument("--backends",
                        help="comma-separated fastnn backends (default: every available one)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--targets", metavar="PATH",
                        help="the performance targets to check (TOML, or JSON with the same "
                             "keys; default: the file shipped with fastnn, "
                             "fastnn/bench/targets.toml)")
    parser.add_argument("--time-per-case", type=float, metavar="SECONDS",
                        help="timing budget per case and thread count "
                             f"(default {QUICK['budget_s']} quick, {FULL['budget_s']} full)")
    parser.add_argument("--cold-compile", action="store_true",
                        help="also measure the cold JIT compile time (on with --full)")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up figures")
    parser.add_argument("--no-roofline", action="store_true",
                        help="skip the bandwidth and GEMM measurements")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the tracemalloc peak-memory measurement")
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    parser.add_argument("--plot", metavar="PATH",
                        help="write a PNG: speedup bars and a roofline chart (needs matplotlib: "
                             "pip install 'fastnn[plot]')")
    parser.add_argument("--list", action="store_true",
                        help="list kernels, sizes and contenders, then exit")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser


class UsageError(Exception):
    pass


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def select_kernels(text):
    """Kernel names matching comma-separated names, families or patterns."""
    from .cases import KERNELS
    if not text:
        return list(KERNELS)
    chosen = []
    for token in _split(text):
        if token in KERNELS:         # an exact kernel name wins over a family of that name
            matched = [token]
        else:
            matched = [name for name, kernel in KERNELS.items()
                       if fnmatch.fnmatchcase(name, token) or kernel.family == token]
        if not matched:
            raise UsageError(f"--kernels: no kernel matches {token!r}; "
                             f"known: {', '.join(KERNELS)}")
        chosen += [name for name in matched if name not in chosen]
    return [name for name in KERNELS if name in chosen]


def select_sizes(kernel_names, text, full):
    """``{kernel: [size names]}``: the quick set, every size, or the ``--sizes`` matches."""
    from .cases import KERNELS
    selected = {}
    tokens = _split(text) if text else None
    used = set()
    for name in kernel_names:
        kernel = KERNELS[name]
        if tokens is None:
            names = [s.name for s in kernel.sizes] if full else list(kernel.quick)
        else:
            names = []
            for size in kernel.sizes:
                matching = [t for t in tokens if t in (size.name, size.tier, size.label)]
                if matching:
                    names.append(size.name)
                    used.update(matching)
        if names:
            selected[name] = names
    if tokens is not None:
        unused = [t for t in tokens if t not in used]
        if unused:
            known = sorted({s.name for n in kernel_names for s in KERNELS[n].sizes})
            raise UsageError(f"--sizes: {', '.join(map(repr, unused))} matches no size of the "
                             f"chosen kernels; known: {', '.join(known)} or a shape label")
    if not selected:
        raise UsageError("no kernel has any of the chosen sizes")
    return selected


def select_dtypes(text):
    dtypes = []
    for token in _split(text):
        if token in ("both", "all"):
            dtypes += ["float32", "float64"]
        elif token in ("float32", "float64", "f32", "f64"):
            dtypes.append({"f32": "float32", "f64": "float64"}.get(token, token))
        else:
            raise UsageError(f"--dtype: expected float32, float64 or both, got {token!r}")
    return list(dict.fromkeys(dtypes)) or ["float32"]


def select_threads(text):
    from .contenders import max_threads
    limit = max_threads()
    if not text:
        return [limit]
    threads = []
    for token in _split(text):
        try:
            n = int(token)
        except ValueError:
            raise UsageError(f"--threads: expected integers such as 1,2, got {token!r}") from None
        if not 1 <= n <= limit:
            raise UsageError(f"--threads: {n} is outside 1..{limit} (the usable CPUs)")
        threads.append(n)
    return sorted(set(threads))


class Progress:
    """One status line on stderr: rewritten in place on a terminal, else one line per step."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.width = 0

    def __call__(self, message, step=None, total=None):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        prefix = f"[{step:>{len(str(total))}}/{total} {elapsed:4.0f}s] " if step else \
            f"[{elapsed:4.0f}s] "
        text = prefix + message
        if self.tty and message.startswith("warning:"):     # kept, not overwritten
            sys.stderr.write("\r" + text.ljust(self.width) + "\n")
            self.width = 0
        elif self.tty:
            sys.stderr.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self):
        if self.enabled and self.tty and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def _list(kernel_names):
    from .cases import KERNELS
    from .contenders import make_contenders
    lines = []
    for name in kernel_names:
        kernel = KERNELS[name]
        cost = kernel.bytes_formula and f"min bytes {kernel.bytes_formula}" or \
            f"flops {kernel.flops_formula}"
        lines.append(f"{name}: {kernel.title} ({cost})")
        for size in kernel.sizes:
            mark = "  (quick)" if size.name in kernel.quick else ""
            lines.append(f"    {size.name:12} {size.label}{mark}")
    contenders, skipped, lacking = make_contenders()
    lines.append("contenders: " + ", ".join(c.name for c in contenders))
    for name, reason in skipped.items():
        lines.append(f"    not available: {name}: {reason}")
    for name, missing in lacking.items():
        lines.append(f"    {name} lacks: {', '.join(missing)}")
    from .targets import DEFAULT_PATH
    lines.append(f"targets: {DEFAULT_PATH} (another file: --targets PATH)")
    print("\n".join(lines))


def _respawn(argv):
    """Re-run in a child with OPENBLAS_THREAD_TIMEOUT set; None when not needed."""
    if os.environ.get(environment.CHILD_MARK) or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return None
    env = environment.user_environment()
    env["OPENBLAS_THREAD_TIMEOUT"] = OPENBLAS_TIMEOUT
    env[environment.ADDED_MARK] = "OPENBLAS_THREAD_TIMEOUT"
    env[environment.CHILD_MARK] = "1"
    try:
        return subprocess.call([sys.executable, "-m", "fastnn", "bench", *argv], env=env)
    except KeyboardInterrupt:
        return 130


def _to_json(value):
    if hasattr(value, "item"):          # NumPy scalars
        return value.item()
    return str(value)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        kernels = select_kernels(args.kernels)
        if args.list:
            _list(kernels)
            return 0
        sizes = select_sizes(kernels, args.sizes, args.full)
        kernels = [k for k in kernels if k in sizes]
        dtypes = select_dtypes(args.dtype)
        threads = select_threads(args.threads)
        if args.time_per_case is not None and args.time_per_case <= 0:
            raise UsageError("--time-per-case: expected a positive number of seconds")
        from .targets import TargetsError, load
        targets_note = None
        try:
            targets = load(args.targets)
        except TargetsError as exc:
            if args.targets:
                raise UsageError(f"--targets: {exc}") from None
            targets, targets_note = None, str(exc)    # the shipped file: report, don't stop

    except UsageError as exc:
        parser.error(str(exc))       # exits with status 2
    if args.plot:
        from .plot import matplotlib_missing
        reason = matplotlib_missing()
        if reason:
            print(f"python -m fastnn bench: --plot needs matplotlib ({reason}); install it "
                  f"with: pip install 'fastnn[plot]'  (or run without --plot)", file=sys.stderr)
            return 2

    code = _respawn(argv)
    if code is not None:
        return code

    from .runner import Config, run
    from .report import render
    timing_defaults = FULL if args.full else QUICK
    config_backends = _split(args.backends) if args.backends else None
    config = Config(
        kernels=kernels, sizes=sizes, dtypes=dtypes, threads=threads,
        backends=config_backends,
        use_torch=not args.no_torch,
        budget_s=args.time_per_case or timing_defaults["budget_s"],
        min_rounds=timing_defaults["min_rounds"],
        memory=not args.no_memory, startup=not args.no_startup,
        cold_compile=args.cold_compile or args.full, roofline=not args.no_roofline,
        mode="full" if args.full else "quick",
        reference_at_large=args.full or "numpy" in (config_backends or ()),
        targets=targets, targets_note=targets_note)
    progress = Progress(not args.quiet)
    try:
        result = run(config, progress)
    except KeyboardInterrupt:
        progress.done()
        print("python -m fastnn bench: interrupted", file=sys.stderr)
        return 130
    progress.done()
    sys.stdout.write(render(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=_to_json)
        print(f"figures written to {args.json}")
    if args.plot:
        from .plot import plot
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return 1 if result["failures"] else 0
