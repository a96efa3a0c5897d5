"""What a deployment tier says, and the helpers its rules share (:mod:`qbench.analysis.tiers`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

TIERS = ("development", "staging", "production", "high_load")
# Production runs at no more than this share of its capacity: 30% headroom for spikes and noise.
PRODUCTION_LOAD_SHARE = 0.7
# Staging rehearses production's config at this share of production's load.
STAGING_LOAD_SHARE = 0.5


@dataclass
class _Tier:
    """One tier of one group: the config it names (a summary row) and what it is planned for."""

    tier: str
    # the summary row whose figures the tier quotes
    row: pd.Series
    capacity: float
    capacity_low: float
    capacity_high: float
    # planned load (NaN: none planned)
    load: float
    rule: str
    evidence: str
    meets_target: bool | None = None
    meets_slo: bool | None = None
    sustainable: float = math.nan
    notes: list[str] = field(default_factory=list)
    # p99 (median, CI) and busy rate quoted instead of the row's: a steady sweep's, for a drain
    quoted: dict[str, float] = field(default_factory=dict)


def _f(row: pd.Series, key: str) -> float:
    try:
        return float(row.get(key))
    except (TypeError, ValueError):
        return math.nan


def _resources(frame: pd.DataFrame, pool: str = "pool_connections_median") -> pd.DataFrame:
    """``frame`` sorted by fewest resources: workers, worker processes, pool connections."""
    order = [c for c in ("workers", "executor_processes", pool) if c in frame]
    return frame.sort_values(order, kind="stable")


def _capacity(row: pd.Series) -> tuple[float, float, float]:
    """A drain's capacity: median throughput and its CI (the median itself when there is no CI)."""
    median = _f(row, "throughput_tps_median")
    low, high = _f(row, "throughput_tps_ci_low"), _f(row, "throughput_tps_ci_high")
    return median, low if math.isfinite(low) else median, high if math.isfinite(high) else median


def _workers(n: int) -> str:
    return f"{n} worker{'' if n == 1 else 's'}"


def _tps(x: float) -> str:
    return f"{x:,.0f} tasks/s" if math.isfinite(x) else "no rate"


@dataclass(frozen=True)
class _Steady:
    """A drain's summary row -> the sustainable-rate row of the same config under a steady sweep."""

    lookup: Callable[[pd.Series], pd.Series | None]
    # False: there is no open-loop result to look in (every lookup is None)
    has_rates: bool

    def __call__(self, row: pd.Series) -> pd.Series | None:
        return self.lookup(row)


def _staging(production: _Tier) -> _Tier:
    load = STAGING_LOAD_SHARE * production.load
    return _Tier(
        "staging",
        production.row,
        production.capacity,
        production.capacity_low,
        production.capacity_high,
        load,
        f"production's config at {STAGING_LOAD_SHARE:.0%} of production's planned load",
        f"rehearses what ships at {_tps(load)}",
        meets_target=production.meets_target,
        meets_slo=production.meets_slo,
        sustainable=production.sustainable,
        quoted=dict(production.quoted),
    )
