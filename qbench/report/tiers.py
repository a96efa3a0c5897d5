"""The report's deployment tiers and sustainable rates, with the rules that derived them.

The rules are read from the tables (``tier_rule``, ``rule``), so the report
states exactly what the analysis did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from qbench.report.curves import _records
from qbench.report.markup import Doc
from qbench.report.plots import _DASH, _fmt, _num
from qbench.report.words import distinguishing, name_by, plural, setting_columns

Row = Mapping[str, Any]
_EN = "\N{EN DASH}"
_TIMES = "\N{MULTIPLICATION SIGN}"
HEADROOM_RULE = (
    "Headroom is 1 - planned load / capacity. Capacity is a drain's median throughput with its 95% CI "
    "(the CI's low end sets planned loads), or an open-loop config's sustainable rate (a rate tried, so "
    "without a CI); p99 and busy rate are measured at the quoted rate or drain."
)


def base_rows(recs: Sequence[Row]) -> list[Row]:
    """One row per group for the sections written before tiers: the development rows (or every row
    of a table without tiers)."""
    return [r for r in recs if r.get("tier") in (None, "development")]


def _ci(r: Row, low: str, high: str, kind: str) -> str:
    a, b = r.get(low), r.get(high)
    return "" if _num(a) is None or _num(b) is None else f" ({_fmt(a, kind)}{_EN}{_fmt(b, kind)})"


def _config(r: Row) -> str:
    executor = str(r.get("executor_kind"))
    if executor == "process":
        executor += f" {_TIMES}{_fmt(r.get('executor_processes'), 'int')}"
    text = f"{executor}, {plural(r.get('workers'), 'worker')}, pool {r.get('pool_kind')} "
    text += f"({plural(r.get('pool_connections'), 'connection')}), "
    text += f"{r.get('journal_mode')}/{r.get('synchronous')}, "
    text += f"busy {r.get('busy_policy')} {_fmt(r.get('busy_timeout_ms'), 'int')} ms, "
    text += f"claim {r.get('claim_tx')} batch {_fmt(r.get('claim_batch'), 'int')}"
    if str(r.get("workload_kind")) in ("steady", "burst"):
        text += f", measured at workload.rate={_fmt(r.get('workload_rate'), 'int')}"
    return text


def _where(r: Row, setting: Sequence[str]) -> str:
    where = f"{r.get('host')}, {r.get('workload_kind')}, {r.get('journal_mode')}/{r.get('synchronous')}"
    return where + (f", {name_by(r, setting)}" if setting else "")


def _flags(r: Row) -> str:
    verdicts = []
    for key, what in (("meets_target", "target"), ("meets_slo", "SLO")):
        value = r.get(key)
        if isinstance(value, bool) or value in (0, 1):
            verdicts.append(f"{what} {'met' if value else 'NOT met'}")
    return ", ".join(verdicts)


def _tier_cells(r: Row, setting: Sequence[str]) -> dict[str, str]:
    load = _num(r.get("load_tps"))
    flags = _flags(r)
    return {
        "Where": _where(r, setting),
        "Tier": str(r.get("tier")),
        "Config": _config(r),
        "Capacity tasks/s (95% CI)": _fmt(r.get("capacity_tps"), "tps")
        + _ci(r, "capacity_ci_low", "capacity_ci_high", "tps"),
        "Planned load tasks/s": _DASH if load is None else _fmt(load, "tps"),
        "Headroom": _fmt(r.get("headroom"), "pct"),
        "p99 ms (95% CI)": _fmt(r.get("e2e_latency_p99_ms"), "ms")
        + _ci(r, "e2e_latency_p99_ci_low", "e2e_latency_p99_ci_high", "ms"),
        "Busy rate": _fmt(r.get("busy_rate"), "pct"),
        "Evidence": str(r.get("tier_evidence")) + (f" ({flags})" if flags else ""),
        "Confidence": str(r.get("tier_confidence")),
    }


def _setting(recs: Sequence[Row]) -> list[str]:
    """Group keys beyond host, workload and storage that tell the tier groups apart."""
    return [c for c in setting_columns(base_rows(recs)) if c not in ("tier", "workload_rate")]


def tiers_section(doc: Doc, recommendations: pd.DataFrame, th: Mapping[str, float]) -> None:
    """The deployment tiers: rules, then one table row per group and tier."""
    recs = [r for r in _records(recommendations) if r.get("tier") is not None]
    doc.heading(2, "Deployment tiers")
    if not recs:
        doc.para("No deployment tier was derived.")
        return
    slo, target = th.get("slo_p99_ms", 0.0), th.get("slo_target_tps", 0.0)
    given = [f"latency SLO p99 <= {slo:g} ms" if slo else "no latency SLO (slo_p99_ms)"]
    given.append(f"target rate {target:g} tasks/s" if target else "no target rate (slo_target_tps)")
    doc.para(f"Given: {', '.join(given)}. Each tier by its rule:")
    kinds = {str(r.get("workload_kind")) for r in recs}
    rules = dict.fromkeys(
        f"{r.get('tier')}"
        + (f" ({r.get('workload_kind')})" if len(kinds) > 1 else "")
        + f": {r.get('tier_rule')}"
        for r in recs
    )
    doc.bullets(list(rules))
    doc.para(HEADROOM_RULE)
    setting = _setting(recs)
    doc.table([_tier_cells(r, setting) for r in recs], "")


def _rate_cells(r: Row, names: Sequence[str]) -> dict[str, str]:
    return {
        "Config": f"{r.get('host')}, {name_by(r, names)}" if names else str(r.get("host")),
        "Rates tried": f"{plural(r.get('rates_tried'), 'rate')}, {_fmt(r.get('rate_min_tps'), 'tps')}"
        f"{_EN}{_fmt(r.get('rate_max_tps'), 'tps')} tasks/s",
        "Sustainable tasks/s": _fmt(r.get("sustainable_rate_tps"), "tps"),
        "p99 there ms (95% CI)": _fmt(r.get("e2e_latency_p99_ms"), "ms")
        + _ci(r, "e2e_latency_p99_ci_low", "e2e_latency_p99_ci_high", "ms"),
        "Busy rate there": _fmt(r.get("busy_rate"), "pct"),
        "Limit": (
            f"at {_fmt(r.get('limit_rate_tps'), 'tps')} tasks/s: {r.get('limit')}"
            if _num(r.get("limit_rate_tps")) is not None
            else str(r.get("limit"))
        ),
    }


def sustainable_section(doc: Doc, rates: pd.DataFrame | None) -> None:
    """Per open-loop config, its sustainable rate and what stopped it; nothing without open-loop results."""
    rows = _records(rates) if rates is not None else []
    if not rows:
        return
    doc.heading(2, "Sustainable rates")
    doc.para(f"The sustainable rate of a config is {rows[0].get('rule')}.")
    stats = list(rows[0])[list(rows[0]).index("rates_tried") :] if "rates_tried" in rows[0] else []
    candidates = [c for c in rows[0] if c not in stats and c != "host"]
    names = distinguishing(rows, candidates)
    doc.table([_rate_cells(r, names) for r in rows], "")
