"""The performance targets of the fast backends (issue 3), checked against a run.

Each target is a set of ratios from one run: speedup against the NumPy
baseline and against PyTorch (other's median / fastnn's median, same dtype
and thread count), and at the large sizes a share of the machine's limit:
GB/s against the DRAM triad for the memory-bound kernels, or, for Linear,
the extra time over NumPy's bare GEMM products ("gemm-only").  They apply to
every fastnn backend except ``numpy``, the reference, which is not meant to
be fast.
"""

from dataclasses import dataclass

MEDIUM_AND_LARGE = ("medium", "large", "medium-nchw", "large-nchw")
LARGE = ("large", "large-nchw")


@dataclass(frozen=True)
class Target:
    kernels: tuple
    sizes: tuple                # size names the ratios apply to
    vs_numpy: float
    vs_torch: float
    roof: float = None          # minimum share of triad GB/s, at LARGE sizes
    gemm_overhead: float = None  # Linear: maximum (fastnn / gemm-only - 1), at medium/large


TARGETS = (
    Target(("batchnorm_forward_train",), MEDIUM_AND_LARGE, 10.0, 1.5, roof=0.70),
    Target(("batchnorm_forward_eval",), MEDIUM_AND_LARGE, 3.0, 1.2, roof=0.70),
    Target(("batchnorm_backward",), MEDIUM_AND_LARGE, 6.0, 1.5, roof=0.70),
    Target(("cross_entropy_with_grad",), ("medium", "large"), 6.0, 3.0, roof=0.60),
    Target(("cross_entropy",), ("medium", "large"), 4.0, 1.5, roof=0.60),
    Target(("linear_forward", "linear_relu_forward", "linear_backward", "linear_relu_backward"),
           ("medium", "large"), 1.0, 1.0, gemm_overhead=0.05),
    Target(("batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward",
            "cross_entropy", "cross_entropy_backward", "cross_entropy_with_grad"),
           ("tiny", "tiny-nchw"), 1.5, 1.5),
    Target(("linear_forward", "linear_relu_forward", "linear_backward", "linear_relu_backward"),
           ("tiny",), 0.7, 1.0),
)


def _find(kernel, size):
    for target in TARGETS:
        if kernel in target.kernels and size in target.sizes:
            return target
    return None


def check(rows):
    """One verdict per fast-backend row that a target covers.

    ``rows`` are the result rows of a run (see ``runner``).  Returns a list
    of dicts: the row's identity, and per criterion ``(wanted, got, met)``;
    ``got`` is None where the figure is missing (no PyTorch, no roof).
    """
    by_case = {}
    for row in rows:
        key = (row["kernel"], row["size"], row["dtype"], row["threads"])
        by_case.setdefault(key, {})[row["contender"]] = row
    verdicts = []
    for (kernel, size, dtype, threads), case in by_case.items():
        target = _find(kernel, size)
        if target is None:
            continue
        for name, row in case.items():
            if row["kind"] != "fastnn" or row["backend"] == "numpy" or row["status"] != "ok":
                continue
            criteria = {
                "vs_numpy": (target.vs_numpy, row.get("vs_numpy")),
                "vs_torch": (target.vs_torch, row.get("vs_torch")),
            }
            if target.roof is not None and size in LARGE:
                criteria["of_triad"] = (target.roof, row.get("of_roof"))
            if target.gemm_overhead is not None:
                bound = case.get("gemm-only")
                overhead = None
                if bound is not None and bound["status"] == "ok":
                    overhead = row["median_s"] / bound["median_s"] - 1.0
                criteria["gemm_overhead"] = (target.gemm_overhead, overhead)
            verdict = {"kernel": kernel, "size": size, "label": row["label"], "dtype": dtype,
                       "threads": threads, "contender": name, "criteria": {}}
            for criterion, (wanted, got) in criteria.items():
                if got is None:
                    met = None
                elif criterion == "gemm_overhead":
                    met = got <= wanted
                else:
                    met = got >= wanted
                verdict["criteria"][criterion] = {"wanted": wanted, "got": got, "met": met}
            verdicts.append(verdict)
    return verdicts
