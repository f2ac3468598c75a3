"""What the running machine offers: its cache sizes, read once.

Kernel thresholds that depend on the caches (when a pass streams its output
past them, when batch norm runs a channel at a time) are decided from the
machine a process runs on, not fixed on the one they were tuned on: sizes
that were DRAM-bound on one project machine were cache-resident on the
next (docs/PERFORMANCE.md).

``caches()`` reads Linux's ``/sys/devices/system/cpu/cpu0/cache`` (the
level, type and size of each cache the first CPU sees), else the C
library's ``sysconf`` names where it has them, else assumes a small modern
core (48 KiB L1d, 1 MiB L2, 8 MiB last-level cache).  ``FASTNN_CACHE_BYTES``
(for example ``l2=524288,l3=16777216``) overrides any of them, for tests and
for machines that misreport.
"""

import functools
import os
from dataclasses import dataclass
from pathlib import Path

_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")
_DEFAULT = {"l1d": 48 << 10, "l2": 1 << 20, "l3": 8 << 20}


@dataclass(frozen=True)
class Caches:
    l1d: int            # bytes of level-1 data cache of one core
    l2: int             # bytes of level-2 cache of one core
    l3: int             # bytes of the last-level cache (the L2 where there is no L3)
    source: str         # where the figures come from

    @property
    def last_level(self):
        return self.l3


def _parse_size(text):
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def _from_sysfs():
    found = {}
    for index in sorted(_SYSFS.glob("index*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        found[{1: "l1d", 2: "l2", 3: "l3"}.get(level, f"l{level}")] = size
    return found


def _from_sysconf():
    found = {}
    for key, name in (("l1d", "SC_LEVEL1_DCACHE_SIZE"), ("l2", "SC_LEVEL2_CACHE_SIZE"),
                      ("l3", "SC_LEVEL3_CACHE_SIZE")):
        try:
            value = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            continue
        if value > 0:
            found[key] = value
    return found


def _from_environment():
    found = {}
    for item in os.environ.get("FASTNN_CACHE_BYTES", "").split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            found[key.strip().lower()] = int(value)
    return found


@functools.lru_cache(maxsize=None)
def caches():
    """The running machine's ``Caches`` (read once per process)."""
    sizes, sources = dict(_DEFAULT), ["assumed"]
    for source, reader in (("sysfs", _from_sysfs), ("sysconf", _from_sysconf)):
        found = reader()
        if found:
            # A machine without an L3: its L2 is the last level.
            found.setdefault("l3", found.get("l2", _DEFAULT["l2"]))
            sizes.update(found)
            sources = [source]
            break
    override = _from_environment()
    if override:
        sizes.update(override)
        sources.append("FASTNN_CACHE_BYTES")
    return Caches(sizes["l1d"], sizes["l2"], sizes["l3"], "+".join(sources))
