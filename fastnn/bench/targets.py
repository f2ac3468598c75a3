"""Performance targets: read from a data file, checked against a run's rows.

The targets are data (``targets.toml`` beside this module, or the file
``python -m fastnn bench --targets PATH`` names), not code: each entry
selects rows by backend, kernel, size, variant, dtype and thread count, and
states criteria that are ratios from the same run (its header comment
lists them).  ``load`` validates a file against the known kernels and
sizes; ``check`` gives one verdict per row an entry selects.  The
``numpy`` backend is fastnn's readable reference, not meant to be fast:
no target applies to it.

A file ending in ``.json`` is read as JSON (``{"target": [ ... ]}``),
anything else as TOML (Python 3.11's ``tomllib``, or ``tomli`` on 3.10).
"""

import fnmatch
import json
import os
from dataclasses import dataclass, field

from .contenders import REFERENCE_BACKEND
from .machine import CONTENDED_CPUS

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets.toml")
VARIANTS = ("plain", "out")
# criterion -> its name in the report (vs_backend, a table of backends, is apart)
RATIO_CRITERIA = {"vs_numpy": "xNumPy", "vs_torch": "xTorch", "of_triad": "of triad",
                  "max_over_gemm_only": "over gemm-only",
                  "max_over_kernels_only": "over kernels-only"}
_SELECTORS = ("backends", "kernels", "sizes", "variants", "dtypes", "threads")


@dataclass(frozen=True)
class Target:
    where: str                      # "targets.toml, target 3": for messages
    backends: tuple
    kernels: tuple                  # names or shell patterns
    sizes: tuple                    # names, labels or patterns
    variants: tuple = VARIANTS
    dtypes: tuple = None            # None: every dtype
    threads: tuple = None           # None: every thread count
    criteria: dict = field(default_factory=dict)   # name -> wanted; "vs_backend": {name: X}

    def selects(self, row, size_label):
        backend = row["backend"]
        variant = row["variant"] or "plain"
        return (backend in self.backends and variant in self.variants
                and any(fnmatch.fnmatchcase(row["kernel"], k) for k in self.kernels)
                and any(fnmatch.fnmatchcase(row["size"], s) or fnmatch.fnmatchcase(size_label, s)
                        for s in self.sizes)
                and (self.dtypes is None or row["dtype"] in self.dtypes)
                and (self.threads is None or row["threads"] in self.threads))


@dataclass(frozen=True)
class Targets:
    path: str
    entries: tuple

    @property
    def backends(self):
        return sorted({b for entry in self.entries for b in entry.backends})


class TargetsError(ValueError):
    pass


def _read(path):
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    try:
        import tomllib
    except ImportError:                 # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise TargetsError(f"{path}: reading TOML needs Python 3.11 or the tomli package "
                               f"(pip install tomli); or pass a .json file") from None
    with open(path, "rb") as f:
        return tomllib.load(f)


def _names(value, where, key):
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise TargetsError(f"{where}: {key}: expected a non-empty list, got {value!r}")
    return tuple(value)


def _number(value, where, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise TargetsError(f"{where}: {key}: expected a positive number, got {value!r}")
    return float(value)


def load(path=None):
    """The targets of ``path`` (default: the file shipped with fastnn); TargetsError if bad."""
    from .cases import KERNELS
    path = path or DEFAULT_PATH
    try:
        data = _read(path)
    except OSError as exc:
        raise TargetsError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except ValueError as exc:           # JSON or TOML syntax
        if isinstance(exc, TargetsError):
            raise
        raise TargetsError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'TOML'}: "
                           f"{exc}") from None
    if not isinstance(data, dict) or set(data) - {"target"}:
        raise TargetsError(f"{path}: expected only [[target]] entries, got keys "
                           f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    entries = []
    for index, raw in enumerate(data.get("target", []), start=1):
        where = f"{os.path.basename(path)}, target {index}"
        if not isinstance(raw, dict):
            raise TargetsError(f"{where}: expected a table, got {raw!r}")
        unknown = set(raw) - set(_SELECTORS) - set(RATIO_CRITERIA) - {"vs_backend"}
        if unknown:
            raise TargetsError(f"{where}: unknown keys {sorted(unknown)}; expected selectors "
                               f"{list(_SELECTORS)} and criteria "
                               f"{list(RATIO_CRITERIA) + ['vs_backend']}")
        for key in ("backends", "kernels", "sizes"):
            if key not in raw:
                raise TargetsError(f"{where}: {key} is missing")
        backends = _names(raw["backends"], where, "backends")
        if REFERENCE_BACKEND in backends:
            raise TargetsError(f"{where}: backends: {REFERENCE_BACKEND!r} is the reference "
                               f"backend, which has no targets")
        kernels = _names(raw["kernels"], where, "kernels")
        matched = [name for name in KERNELS
                   if any(fnmatch.fnmatchcase(name, k) for k in kernels)]
        for pattern in kernels:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in KERNELS):
                raise TargetsError(f"{where}: kernels: {pattern!r} matches no kernel; known: "
                                   f"{', '.join(KERNELS)}")
        sizes = _names(raw["sizes"], where, "sizes")
        for pattern in sizes:
            if not any(fnmatch.fnmatchcase(s.name, pattern) or fnmatch.fnmatchcase(s.label, pattern)
                       for name in matched for s in KERNELS[name].sizes):
                raise TargetsError(f"{where}: sizes: {pattern!r} is no size of "
                                   f"{', '.join(matched)}")
        variants = _names(raw.get("variants", VARIANTS), where, "variants")
        if set(variants) - set(VARIANTS):
            raise TargetsError(f"{where}: variants: expected some of {list(VARIANTS)}, got "
                               f"{list(variants)}")
        dtypes = raw.get("dtypes")
        if dtypes is not None:
            dtypes = _names(dtypes, where, "dtypes")
            if set(dtypes) - {"float32", "float64"}:
                raise TargetsError(f"{where}: dtypes: expected float32 and/or float64, got "
                                   f"{list(dtypes)}")
        threads = raw.get("threads")
        if threads is not None:
            threads = _names(threads, where, "threads")
            if not all(isinstance(t, int) and not isinstance(t, bool) and t > 0
                       for t in threads):
                raise TargetsError(f"{where}: threads: expected positive integers, got "
                                   f"{list(threads)}")
        criteria = {key: _number(raw[key], where, key) for key in RATIO_CRITERIA if key in raw}
        if "vs_backend" in raw:
            other = raw["vs_backend"]
            if not isinstance(other, dict) or not other:
                raise TargetsError(f"{where}: vs_backend: expected a table such as "
                                   f"{{ numba = 0.9 }}, got {other!r}")
            criteria["vs_backend"] = {str(name): _number(value, where, f"vs_backend.{name}")
                                      for name, value in other.items()}
        if not criteria:
            raise TargetsError(f"{where}: states no criterion")
        entries.append(Target(where, backends, kernels, sizes, variants, dtypes, threads,
                              criteria))
    return Targets(path, tuple(entries))


def _criteria(target, row, case):
    """``[(name, wanted, got, "min" | "max")]`` of one entry for one row."""
    found = []
    for key, wanted in target.criteria.items():
        if key == "vs_numpy":
            found.append(("vs_numpy", wanted, row.get("vs_numpy"), "min"))
        elif key == "vs_torch":
            found.append(("vs_torch", wanted, row.get("vs_torch"), "min"))
        elif key == "of_triad":
            found.append(("of_triad", wanted, row.get("of_roof"), "min"))
        elif key == "max_over_gemm_only":
            bound = case.get("gemm-only")
            got = None
            if bound is not None and bound.get("median_s") and row.get("median_s"):
                got = row["median_s"] / bound["median_s"] - 1.0
            found.append(("max_over_gemm_only", wanted, got, "max"))
        elif key == "max_over_kernels_only":
            floor = case.get(f"fastnn[{row['backend']}]+kernels")
            got = None
            if floor is not None and floor.get("median_s") and row.get("median_s"):
                got = row["median_s"] / floor["median_s"] - 1.0
            found.append(("max_over_kernels_only", wanted, got, "max"))
        elif key == "vs_backend":
            for other, ratio in wanted.items():
                name = f"fastnn[{other}]" + (f"+{row['variant']}" if row["variant"] else "")
                peer = case.get(name)
                got = None
                if peer is not None and peer.get("median_s") and row.get("median_s"):
                    got = peer["median_s"] / row["median_s"]
                found.append((f"vs_fastnn[{other}]", ratio, got, "min"))
    return found


def check(rows, targets):
    """One verdict per fast-backend row some target selects.

    ``rows`` are the result rows of a run (see ``runner``).  Returns a list
    of dicts: the row's identity, and per criterion ``{wanted, got, met,
    sense}``; ``got`` and ``met`` are None where the figure is missing (no
    PyTorch, no roof, no peer row).  A criterion stated twice with the same
    value is shown once.  ``contended`` marks a case timed while other
    processes kept CPUs busy: its figures say little about the machine, and
    the report does not count its verdicts.
    """
    by_case = {}
    for row in rows:
        key = (row["kernel"], row["size"], row["dtype"], row["threads"])
        by_case.setdefault(key, {})[row["contender"]] = row
    verdicts = []
    for case in by_case.values():
        for name, row in case.items():
            if (row["kind"] != "fastnn" or row["backend"] == REFERENCE_BACKEND
                    or row["status"] != "ok"):
                continue
            criteria = {}
            for target in targets.entries:
                if not target.selects(row, row["label"]):
                    continue
                for criterion, wanted, got, sense in _criteria(target, row, case):
                    label = criterion
                    if label in criteria and criteria[label]["wanted"] != wanted:
                        label = f"{criterion} ({target.where})"
                    met = None if got is None else (got >= wanted if sense == "min"
                                                    else got <= wanted)
                    criteria[label] = {"wanted": wanted, "got": got, "met": met,
                                       "sense": sense}
            if criteria:
                verdicts.append({"kernel": row["kernel"], "size": row["size"],
                                 "label": row["label"], "dtype": row["dtype"],
                                 "threads": row["threads"], "contender": name,
                                 "backend": row["backend"], "criteria": criteria,
                                 "contended": contended(row)})
    return verdicts


def contended(row):
    """Whether the row's case was timed while other processes kept CPUs busy."""
    return (row.get("other_cpus") or 0.0) > CONTENDED_CPUS


def unchecked_backends(targets, rows):
    """Backends the targets name that have no timed row in the run."""
    present = {row["backend"] for row in rows if row["kind"] == "fastnn"
               and row.get("median_s") is not None}
    return [name for name in targets.backends if name not in present]
