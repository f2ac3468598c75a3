"""Speedup tables from pytest-benchmark JSON files (``benches/``).

    python -m fastnn.bench.speedups RUN.json [OTHER.json]

One file: per group (kernel, size, dtype, threads), each contender's median,
its speedup over the NumPy baseline and PyTorch, and GB/s or GFLOP/s from the
minimum bytes or flops the suite stored in ``extra_info``.  Two files: the
median of each benchmark in both and the ratio old / new (above 1: faster
now).  The files are what ``pytest benches --benchmark-json=PATH`` or
``--benchmark-save=NAME`` (under ``.benchmarks/``) write.
"""

import argparse
import json
import sys


def _load(path):
    with open(path) as f:
        data = json.load(f)
    return data.get("benchmarks", [])


def _fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f}us"
    return f"{seconds * 1e3:.2f}ms" if seconds < 1 else f"{seconds:.2f}s"


def speedup_table(benchmarks):
    groups = {}
    for bench in benchmarks:
        groups.setdefault(bench.get("group") or "", []).append(bench)
    lines = []
    for group, members in groups.items():
        medians = {b["extra_info"].get("contender", b["name"]): b["stats"]["median"]
                   for b in members}
        numpy_s = medians.get("numpy")
        # Several PyTorch rows (the training step's default and fused Adam): the faster counts.
        torch_s = min((m for name, m in medians.items()
                       if name == "torch" or name.startswith("torch+")), default=None)
        lines += ["", group, f"  {'contender':16} {'median':>10} {'xNumPy':>7} {'xTorch':>7} "
                             f"{'rate':>12}"]
        for bench in sorted(members, key=lambda b: b["stats"]["median"]):
            info, median = bench["extra_info"], bench["stats"]["median"]
            name = info.get("contender", bench["name"])
            vs_numpy = f"{numpy_s / median:.2f}" if numpy_s and name != "gemm-only" else "-"
            vs_torch = f"{torch_s / median:.2f}" if torch_s and name != "gemm-only" else "-"
            if info.get("min_bytes"):
                rate = f"{info['min_bytes'] / median / 1e9:.1f} GB/s"
            elif info.get("flops"):
                rate = f"{info['flops'] / median / 1e9:.0f} GF/s"
            else:
                rate = "-"
            lines.append(f"  {name:16} {_fmt_time(median):>10} {vs_numpy:>7} {vs_torch:>7} "
                         f"{rate:>12}")
    return "\n".join(lines)


def comparison_table(old, new):
    old_by_name = {b["fullname"]: b for b in old}
    lines = [f"{'benchmark':90} {'old':>10} {'new':>10} {'old/new':>8}"]
    for bench in new:
        before = old_by_name.get(bench["fullname"])
        if before is None:
            continue
        a, b = before["stats"]["median"], bench["stats"]["median"]
        lines.append(f"{bench['fullname'][-90:]:90} {_fmt_time(a):>10} {_fmt_time(b):>10} "
                     f"{a / b:8.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnn.bench.speedups",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="pytest-benchmark JSON file")
    parser.add_argument("other", nargs="?", help="a second, newer run to compare with")
    args = parser.parse_args(argv)
    if args.other:
        print(comparison_table(_load(args.run), _load(args.other)))
    else:
        print(speedup_table(_load(args.run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
