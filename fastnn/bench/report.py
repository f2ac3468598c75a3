"""The text report of a run: header, roofline, start-up, one table per kernel, targets.

How to read a kernel table (one per kernel, dtype and thread count):

- ``median``/``min``/``max``: seconds per call over the timing rounds;
  compare medians.
- ``xNumPy``, ``xTorch``: speedup = that contender's median / this row's
  median (above 1: this row is faster).
- ``rate``: GB/s from the kernel's minimum bytes (formula above the table)
  for memory-bound kernels, GFLOP/s for Linear; ``%roof``: that rate as a
  share of the DRAM triad, or of the measured GEMM rate.  Medium sizes that
  fit in the last-level cache can exceed 100% of the DRAM triad.
- ``extra``: peak memory the call allocated beyond its outputs (tracemalloc;
  ``?`` for PyTorch, whose allocator it cannot see).
- ``gemm-only`` rows (Linear): NumPy's bare matrix products, the floor a
  fused Linear layer aims at; not a contender.
- ``fastnn[NAME]+out`` rows (batch norm, fused cross-entropy): the output (y,
  dx or the gradient) written into a reused ``out=`` buffer instead of a
  fresh array.
- The training step (``train_step``): ``torch`` is ``torch.optim.Adam``'s
  default, ``torch+fused`` its ``fused=True``; ``xTorch`` is against the
  faster of the two.  ``fastnn[NAME]+kernels`` makes the step's kernel
  calls alone on the same arrays (no layers, optimizer or loop): the
  step's median over it, minus one, is the framework's overhead.
"""

from . import contenders as contenders_mod
from .machine import CONTENDED_CPUS


def fmt_time(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds:.2f}s"


def fmt_bytes(count):
    if count is None:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return f"{count}B"


def fmt_ratio(value):
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_rate(row):
    if row.get("gbps") is not None:
        return f"{row['gbps']:.1f} GB/s"
    if row.get("gflops") is not None:
        return f"{row['gflops']:.0f} GF/s"
    return "-"


def fmt_share(value):
    return "-" if value is None else f"{100 * value:.0f}%"


def _header(result):
    machine = result["machine"]
    versions = machine["versions"]
    blas = machine.get("blas") or {}
    lines = [
        f"fastnn bench ({result['config']['mode']}), {machine['date']}",
        f"machine: {machine['cpu']}, {machine['cpus_usable']} usable CPU(s), "
        f"{fmt_bytes(machine.get('memory_bytes'))} RAM, "
        + ", ".join(f"{k} {v}" for k, v in machine["caches"].items()),
        "software: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v)
        + (f" (fastnn commit {machine['fastnn_commit']})" if machine.get("fastnn_commit") else "")
        + (f"; BLAS {blas.get('internal_api')} {blas.get('version')} "
           f"({blas.get('architecture')} kernels)" if blas else ""),
        f"contenders: {', '.join(result['contenders'])}",
    ]
    for name, reason in result["skipped"].items():
        lines.append(f"  not run: {name}: {reason}")
    for name, missing in (result.get("lacking") or {}).items():
        lines.append(f"  {name} lacks kernels (no rows for them): "
                     + "; ".join(f"{kernel} ({reason})" for kernel, reason in missing.items()))
    how = result.get("how") or {}
    if how:
        lines.append("how each contender ran:")
        for name, text in how.items():
            lines.append(f"  {text}" if name == "this process" else f"  {name}: {text}")
    env = machine.get("environment") or {}
    if env:
        lines.append("environment of this process: "
                     + ", ".join(f"{k}={v}" for k, v in env.items()))
    return lines


def _roofline(result):
    lines = []
    for threads, roof in result.get("roofline", {}).items():
        dram, cache, naive = roof["triad_dram"], roof["triad_cache"], roof["triad_numpy"]
        gemm = ", ".join(f"{name} {g['gflops']:.0f} GFLOP/s" for name, g in roof["gemm"].items())
        spread = ""
        if "measured_gbps" in dram:
            spread = (" (best of start/end: triad "
                      + "/".join(f"{v:.1f}" for v in dram["measured_gbps"]) + " GB/s, GEMM "
                      + "; ".join("/".join(f"{v:.0f}" for v in g["measured_gflops"])
                                  for g in roof["gemm"].values()) + " GFLOP/s)")
        lines.append(
            f"roofline, {threads} thread(s): DRAM triad {dram['gbps']:.1f} GB/s "
            f"({dram['method']}, 3 x {dram['bytes_per_array'] >> 20} MiB); "
            f"in-cache triad {cache['gbps']:.1f} GB/s; "
            f"NumPy's a = b + s*c {naive['gbps']:.1f} GB/s (temporaries, not the roof); "
            f"GEMM {roof['gemm'] and next(iter(roof['gemm'].values()))['n']}^3: {gemm}{spread}")
    return lines


def _startup(result):
    figures = result.get("startup")
    if not figures:
        return []
    lines = []
    imp = figures.get("import") or {}
    if "error" in imp:
        lines.append(f"start-up: import fastnn failed to measure: {imp['error']}")
    elif imp:
        lines.append(f"start-up: import fastnn {fmt_time(imp['import_fastnn_s'])} "
                     f"(of which import numpy {fmt_time(imp['import_numpy_s'])}), "
                     f"median of {imp['processes']} fresh processes")
    for name, entry in figures.get("backends", {}).items():
        if "error" in entry:
            lines.append(f"  fastnn[{name}]: {entry['error']}")
            continue
        text = (f"  fastnn[{name}], warm on-disk cache: first call "
                f"{fmt_time(entry['first_call_s'])} (importing the backends "
                f"{fmt_time(entry['load_backends_s'])} of it; second call "
                f"{fmt_time(entry['second_call_s'])}), "
                f"warmup() loading every kernel {fmt_time(entry['warmup_s'])}")
        if "cold_warmup_s" in entry:
            text += f"; cold compile of every kernel {fmt_time(entry['cold_warmup_s'])}"
        else:
            text += "; cold compile not measured (--cold-compile or --full)"
        lines.append(text)
    warm = result.get("warmup_in_process_s") or {}
    if warm and "error" not in warm:
        lines.append("  this process's fastnn.warmup(): "
                     + ", ".join(f"{k} {fmt_time(v)}" for k, v in warm.items()))
    return lines


_COLUMNS = (("size", 24, "<"), ("impl", 18, "<"), ("median", 9, ">"), ("min", 9, ">"),
            ("max", 9, ">"), ("xNumPy", 7, ">"), ("xTorch", 7, ">"), ("rate", 12, ">"),
            ("%roof", 6, ">"), ("extra", 8, ">"))


def _line(values):
    cells = (f"{v:{align}{width}}" for v, (_, width, align) in zip(values, _COLUMNS))
    return " ".join(cells).rstrip()


def _kernel_tables(result):
    from .cases import KERNELS
    rows = result["rows"]
    lines = []
    groups = {}
    for row in rows:
        groups.setdefault((row["dtype"], row["threads"], row["kernel"]), []).append(row)
    for (dtype, threads, kernel_name), group in groups.items():
        kernel = KERNELS[kernel_name]
        cost = (f"min bytes {kernel.bytes_formula}" if kernel.bytes_formula
                else f"flops {kernel.flops_formula}")
        lines += ["", f"{kernel.name}, {dtype}, {threads} thread(s): {kernel.title}; {cost}",
                  _line([name for name, _, _ in _COLUMNS])]
        previous_size = None
        for index, row in enumerate(group):
            size = f"{row['size']} {row['label']}" if row["size"] != previous_size else ""
            previous_size = row["size"]
            last_of_case = index + 1 == len(group) or group[index + 1]["size"] != row["size"]
            if row["status"] != "ok":
                lines.append(_line([size, row["contender"]]) + "  " + row["status"].upper())
            else:
                lines.append(_row_line(size, row))
            if last_of_case and (row.get("other_cpus") or 0.0) > CONTENDED_CPUS:
                lines.append(f"{'':24} ! other processes kept {row['other_cpus']:.2f} CPU(s) "
                             f"busy while this case was timed: its figures are not the "
                             f"machine's, and its targets are not judged")
    return lines


def _row_line(size, row):
    return _line([
                size, row["contender"], fmt_time(row["median_s"]), fmt_time(row["min_s"]),
                fmt_time(row["max_s"]), fmt_ratio(row.get("vs_numpy")),
                fmt_ratio(row.get("vs_torch")), fmt_rate(row), fmt_share(row.get("of_roof")),
                fmt_bytes(row.get("extra_bytes")) if row["kind"] != "bound" else "",
            ])


def _scaling(result):
    threads = result["config"]["threads"]
    if len(threads) < 2:
        return []
    low, high = min(threads), max(threads)
    medians = {}
    for row in result["rows"]:
        if row.get("median_s") is not None:
            key = (row["dtype"], row["kernel"], row["size"], row["label"], row["contender"])
            medians.setdefault(key, {})[row["threads"]] = row["median_s"]
    lines = ["", f"thread scaling: median at {low} and {high} thread(s), "
             f"speedup = t{low} / t{high}",
             f"{'kernel':28} {'size':24} {'dtype':7} {'impl':18} {'t' + str(low):>9} "
             f"{'t' + str(high):>9} {'speedup':>7}"]
    for (dtype, kernel, size, label, contender), by_threads in medians.items():
        if low in by_threads and high in by_threads:
            lines.append(f"{kernel:28} {size + ' ' + label:24} {dtype:7} {contender:18} "
                         f"{fmt_time(by_threads[low]):>9} {fmt_time(by_threads[high]):>9} "
                         f"{by_threads[low] / by_threads[high]:7.2f}")
    return lines


def _targets(result):
    verdicts = result.get("targets") or []
    path = result.get("targets_file")
    if path is None:
        note = result.get("targets_note")
        return ["", f"targets: not checked: {note}"] if note else []
    lines = ["", f"targets ({path}; met / MISSED, '-' when a figure is missing):"]
    names = {"vs_numpy": "xNumPy", "vs_torch": "xTorch", "of_triad": "of triad",
             "max_over_gemm_only": "over gemm-only", "max_over_kernels_only": "over kernels-only"}
    for verdict in verdicts:
        parts = []
        for criterion, c in verdict["criteria"].items():
            base = criterion.split(" (")[0]
            sign = "<=" if c["sense"] == "max" else ">="
            if base == "of_triad":
                wanted = f"{sign}{100 * c['wanted']:.0f}%"
                got = "-" if c["got"] is None else f"{100 * c['got']:.0f}%"
            elif base in ("max_over_gemm_only", "max_over_kernels_only"):
                wanted = f"{sign}{100 * c['wanted']:.0f}%"
                got = "-" if c["got"] is None else f"{100 * c['got']:+.0f}%"
            else:
                wanted = f"{sign}{c['wanted']:g}"
                got = "-" if c["got"] is None else fmt_ratio(c["got"])
            label = names.get(base, "x" + base[len("vs_"):] if base.startswith("vs_") else base)
            if criterion != base:
                label += criterion[len(base):]
            mark = {True: "met", False: "MISSED", None: "-"}[c["met"]]
            parts.append(f"{label} {got} ({wanted} {mark})")
        lines.append(f"  {verdict['contender']} {verdict['kernel']} {verdict['label']} "
                     f"{verdict['dtype']} {verdict['threads']}t: " + "; ".join(parts)
                     + ("  [timed under contention: not judged]" if verdict.get("contended")
                        else ""))
    judged = [c for v in verdicts if not v.get("contended") for c in v["criteria"].values()]
    met = sum(c["met"] is True for c in judged)
    missed = sum(c["met"] is False for c in judged)
    unknown = sum(c["met"] is None for c in judged)
    contended = sum(len(v["criteria"]) for v in verdicts if v.get("contended"))
    lines.append(f"  {met} criteria met, {missed} missed"
                 + (f", {unknown} not checked (a figure is missing)" if unknown else "")
                 + (f", {contended} not judged (their cases were timed while other processes "
                    f"kept CPUs busy; rerun when the machine is quiet)" if contended else ""))
    for name in result.get("targets_unchecked") or []:
        lines.append(f"  targets of fastnn[{name}]: not checked, no fastnn[{name}] row ran")
    return lines


def _failures(result):
    failures = result.get("failures") or []
    if not failures:
        return []
    lines = ["", f"{len(failures)} contender run(s) FAILED (wrong output or error; not timed):"]
    for row in failures:
        lines.append(f"  {row['contender']} {row['kernel']} {row['label']} {row['dtype']} "
                     f"{row['threads']}t: {row['status']}")
    return lines


BUSY_WARNING = CONTENDED_CPUS


def _contention(result):
    busy = result.get("contention")
    if not busy:
        return []
    usable = result["machine"]["cpus_usable"]
    text = (f"contention: other processes kept {busy['other_cpus']:.2f} of {usable} CPU(s) busy "
            f"on average during the run (hypervisor steal {busy['steal_cpus']:.2f})")
    if busy["other_cpus"] + busy["steal_cpus"] > BUSY_WARNING:
        text += ": the machine was shared, figures are slower and noisier than it can do"
    return ["", text]


def render(result):
    """The whole report as a string."""
    lines = _header(result) + _roofline(result) + _startup(result)
    lines += _kernel_tables(result) + _scaling(result) + _targets(result) + _failures(result)
    lines += _contention(result)
    lines += ["", f"baseline: {contenders_mod.BASELINE} = idiomatic NumPy "
              f"(each kernel's entry in fastnn/bench/cases/); "
              f"speedup = other median / this median; finished in {result['elapsed_s']:.0f} s"]
    return "\n".join(lines) + "\n"
