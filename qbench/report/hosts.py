"""The report's per-host section: each host's machine, and its recommendation beside the others'.

Results from several hosts are never pooled (host is a key), so each host gets
its own recommendation. This section, written only when the results hold more
than one host, puts them side by side with the machine facts each host's jobs
recorded (:mod:`qbench.results.machine`), so a difference in the advice can be
read against a difference in the machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from qbench.report.markup import Doc
from qbench.report.plots import _DASH, _fmt, _num
from qbench.report.words import FIRST_FIGURE, OLD_FIRST_FIGURE, _norm, name_by, plural
from qbench.results.machine import FACTS, HostFacts

Row = Mapping[str, Any]
_EN = "\N{EN DASH}"


def _facts_cells(host: str, facts: HostFacts | None) -> dict[str, str]:
    """One host's machine facts as table cells; a fact its files do not record is a dash."""
    cells = {"Host": host}
    for key, label in FACTS.items():
        cells[label[0].upper() + label[1:]] = _fact(key, facts)
    cells["Jobs"] = _fmt(facts.files if facts else None, "int")
    return cells


def _latency(us: float) -> str:
    """Microseconds below a millisecond, milliseconds from one up: 47.5 µs, 2.9 ms."""
    return f"{_fmt(us, 'sig')} \N{MICRO SIGN}s" if us < 1000 else f"{_fmt(us / 1000, 'sig')} ms"


def _fact(key: str, facts: HostFacts | None) -> str:
    if facts is None:
        return _DASH
    if key == "fsync_latency_us":
        median = facts.fsync_median_us()
        if median is None:
            return _DASH
        low, high = min(facts.fsync_us), max(facts.fsync_us)
        spread = f" ({_latency(low)}{_EN}{_latency(high)} over {len(facts.fsync_us)} jobs)"
        return _latency(median) + (spread if len(facts.fsync_us) > 1 else "")
    values = facts.values.get(key, [])
    if key == "memory_total_bytes":
        shown = [f"{_fmt(float(v) / 2**30, 'sig')} GiB" for v in values]
    elif key == "cpu_count_logical":
        shown = [_fmt(v, "int") for v in values]
    else:
        shown = [str(v) for v in values]
    # one value normally; a host whose jobs recorded several (an upgrade mid-sweep) shows them all
    return " / ".join(shown) + (" (varies)" if len(shown) > 1 else "") if shown else _DASH


def _purpose(r: Row) -> tuple[str, ...]:
    """What a recommendation row is for, host aside: its group values before its first figure."""
    names = list(r)
    end = next((names.index(c) for c in (FIRST_FIGURE, OLD_FIRST_FIGURE) if c in names), len(names))
    return tuple(f"{c}={_norm(r.get(c))}" for c in names[:end] if c != "host")


def _advice(r: Row | None) -> str:
    """One host's recommendation for one purpose, in a cell."""
    if r is None:
        return "not measured"
    workers = r.get("recommended_workers", r.get("best_workers"))
    tps = r.get("recommended_throughput_tps", r.get("best_throughput_tps"))
    low = r.get("recommended_throughput_ci_low", r.get("best_throughput_ci_low"))
    high = r.get("recommended_throughput_ci_high", r.get("best_throughput_ci_high"))
    ci = (
        f" ({_fmt(low, 'tps')}{_EN}{_fmt(high, 'tps')})"
        if _num(low) is not None and _num(high) is not None
        else ""
    )
    text = f"{plural(workers, 'worker')}, {_fmt(tps, 'tps')} tasks/s{ci}"
    if _num(r.get("e2e_latency_p99_ms")) is not None:
        text += f", p99 {_fmt(r.get('e2e_latency_p99_ms'), 'ms')} ms"
    if r.get("bottleneck"):
        text += f"; limit: {r.get('bottleneck')}"
    return text


def _label(r: Row, setting: Sequence[str]) -> str:
    label = f"{r.get('workload_kind')}, {r.get('journal_mode')}/{r.get('synchronous')}"
    shown = [c for c in setting if c != "host"]
    return label + (f", {name_by(r, shown)}" if shown else "")


def hosts_section(
    doc: Doc,
    recs: Sequence[Row],
    summary: pd.DataFrame,
    hosts: Mapping[str, HostFacts],
    setting: Sequence[str] = (),
) -> None:
    """The per-host section, when the results hold more than one host; nothing otherwise.

    Args:
        recs: one recommendation row per group (the development tier's, where tiers exist).
        summary: the summary, for each host's configuration count.
        hosts: each host's machine facts over its files.
        setting: the group keys beyond the lead ones that tell rows apart.
    """
    names = sorted({str(h) for h in summary["host"]} | {str(r.get("host")) for r in recs})
    if len(names) < 2:
        return
    doc.heading(2, "Hosts")
    doc.para(
        f"These results come from {plural(len(names), 'host')}. Hosts are never pooled: each has "
        "its own recommendation, below side by side, with the machine facts its jobs recorded "
        "(fsync latency: the median of the jobs' probes of the database directory, with their range)."
    )
    doc.table([_facts_cells(h, hosts.get(h)) for h in names], "")
    purposes: dict[tuple[str, ...], dict[str, Row]] = {}
    for r in recs:
        purposes.setdefault(_purpose(r), {})[str(r.get("host"))] = r
    rows = []
    for by_host in purposes.values():
        first = next(iter(by_host.values()))
        rows.append(
            {"Workload, storage": _label(first, setting)} | {h: _advice(by_host.get(h)) for h in names}
        )
    doc.para("Recommended workers per host (tasks/s there with its 95% CI, p99 latency, what limits it):")
    doc.table(rows, "No recommendation was derived.")
    for host in names:
        own = [r for r in recs if str(r.get("host")) == host]
        configs = int((summary["host"].astype(str) == host).sum())
        doc.heading(3, host)
        facts = hosts.get(host)
        machine = ", ".join(
            f"{label} {_fact(key, facts)}" for key, label in FACTS.items() if _fact(key, facts) != _DASH
        )
        doc.para(
            f"{plural(configs, 'configuration')} measured"
            + (f" in {plural(facts.files, 'job')}" if facts else "")
            + (f"; {machine}." if machine else "; no machine facts recorded.")
        )
        doc.bullets(
            [f"{_label(r, setting)}: {_advice(r)}." for r in own] or ["No recommendation was derived."]
        )
