"""The machine facts a job recorded (``qbench.run.sysinfo`` metadata), per host, for the report.

Each results file carries the system info of the machine that ran it as JSON
in its metadata. Files may come from other machines, so only the few facts
the report shows are taken, each a scalar, strings cut to one short line; a
missing, malformed or oversized entry gives no facts, never an error. A host's
facts over its files: the distinct values of each fact (one, normally) and
the median of the fsync latency probes with their range.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qbench.results.columns import META_SYSINFO
from qbench.results.files import one_line

# Far above a real sysinfo entry (a few KB), far below a memory problem.
MAX_SYSINFO_BYTES = 256 * 1024
# The facts shown, in order: system info key -> label.
FACTS = {
    "cpu_model": "CPU",
    "cpu_count_logical": "logical CPUs",
    "memory_total_bytes": "memory",
    "os": "OS",
    "db_fs_type": "file system",
    "fsync_latency_us": "fsync latency",
    "sqlite_version": "SQLite",
    "python_version": "Python",
}
_NUMBERS = {"cpu_count_logical", "memory_total_bytes", "fsync_latency_us"}

Fact = str | float


def machine_facts(meta: Mapping[str, str]) -> dict[str, Fact]:
    """The facts of :data:`FACTS` one file's metadata records; those absent or malformed left out."""
    text = meta.get(META_SYSINFO) or ""
    if len(text) > MAX_SYSINFO_BYTES:
        return {}
    try:
        info = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(info, dict):
        return {}
    facts: dict[str, Fact] = {}
    for key in FACTS:
        value = info.get(key)
        if key in _NUMBERS:
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                facts[key] = float(value)
        elif isinstance(value, str) and value.strip():
            facts[key] = one_line(value, 120)
    return facts


@dataclass
class HostFacts:
    """A host's facts over the files it wrote."""

    files: int = 0
    # fact -> its distinct values, sorted (strings and counts)
    values: dict[str, list[Fact]] = field(default_factory=dict)
    # every fsync latency probe, microseconds
    fsync_us: list[float] = field(default_factory=list)

    def add(self, facts: Mapping[str, Fact]) -> None:
        self.files += 1
        for key, value in facts.items():
            if key == "fsync_latency_us":
                self.fsync_us.append(float(value))
            elif value not in self.values.setdefault(key, []):
                self.values[key] = sorted([*self.values[key], value], key=str)

    def fsync_median_us(self) -> float | None:
        return statistics.median(self.fsync_us) if self.fsync_us else None


def by_host(entries: Iterable[tuple[Iterable[str], Mapping[str, Fact]]]) -> dict[str, HostFacts]:
    """Facts per host, from (the hosts a file's rows name, that file's facts) pairs."""
    hosts: dict[str, HostFacts] = {}
    for names, facts in entries:
        for host in names:
            hosts.setdefault(host, HostFacts()).add(facts)
    return dict(sorted(hosts.items()))
