"""``--plot PATH``: a PNG of a run, with matplotlib (the optional ``plot`` extra).

Three panels, for the largest thread count and each dtype of the run:

- speedup over the NumPy baseline per kernel and size, one bar per
  contender (log scale; the line at 1 is NumPy);
- the memory roofline: effective GB/s (minimum bytes / median time) of each
  memory-bound case, with the measured DRAM and in-cache triad as lines
  (log scale);
- the compute roofline: GFLOP/s of each Linear case, with the measured GEMM
  rate as a line.
Tiny sizes measure the fixed cost of a call, so the two rooflines leave them out.
"""


def matplotlib_missing():
    """None when matplotlib can be imported, else the reason it cannot."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def _cases(rows, dtype, threads):
    """Ordered ``{case label: {contender: row}}`` of timed rows."""
    found = {}
    for row in rows:
        if row["dtype"] == dtype and row["threads"] == threads and row.get("median_s"):
            label = f"{row['kernel']}\n{row['label']}"
            found.setdefault(label, {})[row["contender"]] = row
    return found


def _bars(axis, cases, contenders, colors, value, ylabel, log=False):
    import numpy as np
    labels = list(cases)
    contenders = [name for name in contenders                 # no empty slots
                  if any(cases[label].get(name, {}).get(value) for label in labels)]
    width = 0.8 / max(len(contenders), 1)
    positions = np.arange(len(labels))
    for i, name in enumerate(contenders):
        values = [cases[label].get(name, {}).get(value) or 0.0 for label in labels]
        axis.bar(positions + (i - (len(contenders) - 1) / 2) * width, values, width, label=name,
                 color=colors[name])
    axis.set_xticks(positions)
    axis.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel(ylabel)
    if not contenders:
        axis.text(0.5, 0.5, "no case of this kind in the run", ha="center",
                  transform=axis.transAxes)
        return
    if log:
        axis.set_yscale("log")
    axis.legend(fontsize=7)


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")            # files only, no display needed
    import matplotlib.pyplot as plt

    threads = max(result["config"]["threads"])
    dtypes = result["config"]["dtypes"]
    roof = result.get("roofline", {}).get(str(threads))
    contenders = [c for c in result["contenders"] if c != "gemm-only"]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {name: palette[i % len(palette)]     # one colour per contender in every panel
              for i, name in enumerate(contenders + ["gemm-only"])}
    figure, axes = plt.subplots(3, len(dtypes), figsize=(max(12, 10 * len(dtypes)), 16),
                                squeeze=False)
    for column, dtype in enumerate(dtypes):
        cases = _cases(result["rows"], dtype, threads)
        speed, memory, compute = axes[0][column], axes[1][column], axes[2][column]
        _bars(speed, cases, [c for c in contenders if c != "numpy"], colors, "vs_numpy",
              "speedup over NumPy (x)", log=True)
        speed.axhline(1.0, color="black", linewidth=0.8)
        speed.set_title(f"speedup over idiomatic NumPy, {dtype}, {threads} thread(s)")

        # Tiny sizes measure call overhead, not bandwidth: left out of the rooflines.
        sized = {k: v for k, v in cases.items()
                 if not next(iter(v.values()))["size"].startswith("tiny")}
        memory_cases = {k: v for k, v in sized.items() if any(r.get("gbps") for r in v.values())}
        _bars(memory, memory_cases, contenders, colors, "gbps",
              "effective GB/s (minimum bytes)", log=True)
        if roof:
            memory.axhline(roof["triad_dram"]["gbps"], color="black", linestyle="--",
                           label="DRAM triad")
            memory.axhline(roof["triad_cache"]["gbps"], color="gray", linestyle=":",
                           label="in-cache triad")
            memory.legend(fontsize=7)
        memory.set_title("memory-bound kernels against the measured triad")

        compute_cases = {k: v for k, v in sized.items()
                         if any(r.get("gflops") for r in v.values())}
        _bars(compute, compute_cases, contenders + ["gemm-only"], colors, "gflops", "GFLOP/s")
        gemm = roof and roof["gemm"].get(dtype)
        if gemm:
            compute.axhline(gemm["gflops"], color="black", linestyle="--",
                            label=f"GEMM {gemm['n']}^3")
            compute.legend(fontsize=7)
        compute.set_title("Linear layers against the measured GEMM rate")
    figure.suptitle(f"fastnn bench, {result['machine']['date']}, {result['machine']['cpu']}")
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    figure.savefig(path, dpi=100)
    plt.close(figure)
