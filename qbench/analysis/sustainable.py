"""The sustainable rate: the highest offered rate a config keeps up with, under the latency SLO.

An open-loop sweep (``workload=steady`` or ``burst`` over several
``workload.rate`` values) measures each config at several offered rates. Per
config (every key but ``workload_rate``, host included), a rate *keeps up* when,
over the measured iterations,

- the median keep-up share is at least :data:`KEEP_UP_SHARE`: per iteration the
  smaller of the producer's achieved rate and the workers' throughput, over the
  rate the schedule actually held (``arrivals / workload.duration_s``, so the
  scatter of Poisson arrivals is not counted as falling behind); and
- when an SLO is given (``slo_p99_ms``), the median end-to-end p99 is at most it.

The sustainable rate is the highest rate tried such that it and every lower
rate tried keep up (a lucky pass above a failure does not count). The first
rate that fails is named with the reason, so the limit is explicit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qbench.analysis.summary import config_id, measured
from qbench.analysis.thresholds import Thresholds

# A rate keeps up when the median iteration served at least this share of its schedule.
KEEP_UP_SHARE = 0.95
OPEN_LOOP = ("steady", "burst")
RATE = "workload_rate"
# The summary column this module adds: the median keep-up share of each open-loop config.
SHARE_COLUMN = "keep_up_share_median"


def sustainable_rule(t: Thresholds) -> str:
    """The rule in words, with the thresholds it used."""
    slo = f"and whose median p99 is at most slo_p99_ms={t.slo_p99_ms:g} ms" if t.slo_p99_ms else ""
    slo = slo or "(no latency SLO given: keeping up alone)"
    return (
        f"the highest workload.rate whose median iteration served at least {KEEP_UP_SHARE:.0%} of its "
        "schedule (the smaller of the producer's achieved rate and the workers' throughput, over "
        f"arrivals / workload.duration_s) {slo}, with every lower rate tried passing too"
    )


def _shares(data: pd.DataFrame) -> pd.Series:
    """Per open-loop iteration: min(achieved, throughput) / the rate the schedule held."""
    tps = pd.to_numeric(data["throughput_tps"], errors="coerce")
    achieved = pd.to_numeric(data.get("achieved_rate_tps", tps), errors="coerce").fillna(tps)
    scheduled = pd.to_numeric(data.get("offered_rate_tps", data[RATE]), errors="coerce")
    if "arrivals" in data and "workload_duration_s" in data:
        held = pd.to_numeric(data["arrivals"], errors="coerce") / pd.to_numeric(
            data["workload_duration_s"], errors="coerce"
        )
        scheduled = held.where(held > 0, scheduled)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(achieved, tps) / scheduled


def add_keep_up_share(frame: pd.DataFrame, summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The summary with :data:`SHARE_COLUMN` (NaN for drains), matched by ``config_id``."""
    if summary.empty or "workload_kind" not in frame:
        return summary
    data = measured(frame)
    data = data[data["workload_kind"].isin(OPEN_LOOP)]
    out = summary.copy()
    out[SHARE_COLUMN] = np.nan
    if data.empty:
        return out
    medians = _shares(data).groupby([data[k] for k in keys], dropna=False, sort=False).median()
    by_id = {config_id(v if isinstance(v, tuple) else (v,)): float(m) for v, m in medians.items()}
    out[SHARE_COLUMN] = out["config_id"].map(by_id).astype(float)
    return out


def _verdict(row: pd.Series, t: Thresholds) -> str:
    """'' when the rate keeps up; otherwise why not."""
    share = float(row[SHARE_COLUMN])
    reasons = []
    if not share >= KEEP_UP_SHARE:
        reasons.append(f"served {share:.1%} of its schedule (< {KEEP_UP_SHARE:.0%})")
    p99 = float(row["e2e_latency_p99_ms_median"])
    if t.slo_p99_ms and not p99 <= t.slo_p99_ms:
        reasons.append(f"p99 {p99:,.1f} ms > SLO {t.slo_p99_ms:g} ms")
    return "; ".join(reasons)


def _one_config(rows: pd.DataFrame, t: Thresholds) -> dict[str, object]:
    rows = rows.sort_values(RATE)
    verdicts = [_verdict(r, t) for _, r in rows.iterrows()]
    passed = 0
    while passed < len(rows) and not verdicts[passed]:
        passed += 1
    at = rows.iloc[passed - 1] if passed else None
    failed = rows.iloc[passed] if passed < len(rows) else None
    rates = rows[RATE].astype(float)
    out: dict[str, object] = {
        "rates_tried": len(rows),
        "rate_min_tps": float(rates.min()),
        "rate_max_tps": float(rates.max()),
        "sustainable_rate_tps": float(at[RATE]) if at is not None else math.nan,
        "keep_up_share": float(at[SHARE_COLUMN]) if at is not None else math.nan,
        "e2e_latency_p99_ms": float(at["e2e_latency_p99_ms_median"]) if at is not None else math.nan,
        "e2e_latency_p99_ci_low": float(at["e2e_latency_p99_ms_ci_low"]) if at is not None else math.nan,
        "e2e_latency_p99_ci_high": float(at["e2e_latency_p99_ms_ci_high"]) if at is not None else math.nan,
        "busy_rate": float(at["busy_rate_median"]) if at is not None else math.nan,
        "pool_connections": float(rows.iloc[0]["pool_connections_median"]),
        "limit_rate_tps": float(failed[RATE]) if failed is not None else math.nan,
        "limit": verdicts[passed]
        if failed is not None
        else "every rate tried kept up: the rate is at least this",
        "config_id": str(at["config_id"]) if at is not None else str(rows.iloc[0]["config_id"]),
    }
    return out


def sustainable_rates(summary: pd.DataFrame, keys: Sequence[str], t: Thresholds) -> pd.DataFrame:
    """One row per open-loop config (every key but the rate): its sustainable rate and what limits it.

    ``summary`` must carry :data:`SHARE_COLUMN` (:func:`add_keep_up_share`). Empty without open-loop
    configs. ``config_id`` is the summary row at the sustainable rate (at the lowest rate when none
    kept up).
    """
    if summary.empty or SHARE_COLUMN not in summary:
        return pd.DataFrame()
    open_loop = summary[summary["workload_kind"].isin(OPEN_LOOP)]
    if open_loop.empty:
        return pd.DataFrame()
    config = [k for k in keys if k != RATE]
    rows = []
    for values, group in open_loop.groupby(config, dropna=False, sort=True):
        rows.append(
            {**dict(zip(config, values, strict=True)), **_one_config(group, t), "rule": sustainable_rule(t)}
        )
    return pd.DataFrame(rows)
