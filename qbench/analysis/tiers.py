"""Deployment tiers: development, staging, production and high_load, derived from the measurements.

Per workload and storage setting (the recommendation groups of
:mod:`qbench.analysis.recommend`; for an open-loop workload the offered rate is a
load level, not a setting, so one group spans a rate sweep). The rules, with
*capacity* the median throughput of a drain (its 95% CI low end when planning a
load) or the sustainable rate of an open-loop config (:mod:`qbench.analysis.sustainable`),
and *fewest resources* the order (workers, worker processes, pool connections):

- **development**: the fewest resources statistically indistinguishable from the
  best: the stable knee (drain; :mod:`qbench.analysis.knee`), or the fewest resources
  sustaining the highest sustainable rate (open loop). No planned load.
- **production**: with a target rate (``slo_target_tps``), the fewest resources whose
  capacity carries it at no more than :data:`PRODUCTION_LOAD_SHARE` of capacity, planned
  load the target; without one, development's config at that share of its capacity. An
  open-loop capacity already holds the latency SLO (``slo_p99_ms``); a drain cannot check
  it, unless a steady sweep of the same config gives its sustainable rate, which then is
  the production figure.
- **staging**: production's config at :data:`STAGING_LOAD_SHARE` of production's load, so
  what staging rehearses is what ships.
- **high_load**: the highest capacity (ties: the lower p99), run at it (no headroom), with
  its p99, busy rate and what limits it (:mod:`qbench.analysis.bottleneck`).

Headroom is ``1 - load / capacity``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qbench.analysis.bottleneck import bottleneck
from qbench.analysis.recommend import group_columns
from qbench.analysis.summary import measured, same_config
from qbench.analysis.sustainable import OPEN_LOOP, RATE
from qbench.analysis.thresholds import Thresholds
from qbench.analysis.tier_model import (
    PRODUCTION_LOAD_SHARE,
    TIERS,
    _capacity,
    _f,
    _resources,
    _staging,
    _Steady,
    _Tier,
    _tps,
    _workers,
)
from qbench.analysis.tiers_open import _open_tiers

# What a tier row says about its config, from the summary row it quotes (summary column or None).
CONFIG = {
    "pool_kind": "pool_kind",
    "pool_connections": "pool_connections_median",
    "busy_policy": "busy_policy",
    "busy_timeout_ms": "busy_timeout_ms",
    "claim_tx": "claim_tx",
    "claim_batch": "claim_batch",
}


# --- drain ----------------------------------------------------------------------


def _drain_production(group: pd.DataFrame, dev: pd.Series, t: Thresholds, steady: _Steady) -> _Tier:
    """Production from a drain; a steady sweep's sustainable rate of a config, when present, is its
    capacity for planning instead of the drain's."""
    share = PRODUCTION_LOAD_SHARE
    if not t.slo_target_tps:
        cap, low, high = _capacity(dev)
        rule = f"development's config at {share:.0%} of its capacity (95% CI low end): no target rate given"
        tier = _Tier(
            "production", dev, cap, low, high, share * low, rule, f"planned load {share:.0%} of {_tps(low)}"
        )
        _with_steady_figure(tier, steady(dev), t)
        return tier
    need = t.slo_target_tps / share
    median = pd.to_numeric(group["throughput_tps_median"], errors="coerce")
    lows = pd.to_numeric(group["throughput_tps_ci_low"], errors="coerce").fillna(median)
    found = [steady(r) for _, r in group.iterrows()] if steady.has_rates else [None] * len(group)
    for position, f in enumerate(found):
        if f is not None:  # a steady sweep's sustainable rate plans instead of the drain's capacity
            lows.iloc[position] = _f(f, "sustainable_rate_tps")
    lows = lows.fillna(-math.inf)
    fits = group[lows >= need]
    row = _resources(fits).iloc[0] if len(fits) else group.loc[lows.idxmax()]
    cap, low, high = _capacity(row)
    rule = (
        f"the fewest resources whose capacity (95% CI low end; a steady sweep's sustainable rate when "
        f"present) carries slo_target_tps={t.slo_target_tps:g} at no more than {share:.0%} of it"
    )
    evidence = f"capacity {_tps(lows[row.name])} against {_tps(need)} needed"
    tier = _Tier(
        "production", row, cap, low, high, t.slo_target_tps, rule, evidence, meets_target=bool(len(fits))
    )
    if not len(fits):
        tier.notes.append(f"no config measured carries the target with {1 - share:.0%} headroom")
    _with_steady_figure(tier, found[group.index.get_loc(row.name)], t)
    return tier


def _drain_tiers(group: pd.DataFrame, rec: pd.Series, t: Thresholds, steady: _Steady) -> list[_Tier]:
    dev = group[group["config_id"] == rec["config_id"]].iloc[0]
    best = group[group["config_id"] == rec["best_config_id"]].iloc[0]
    cap, low, high = _capacity(dev)
    stability = _f(rec, "workers_stability")
    development = _Tier(
        "development",
        dev,
        cap,
        low,
        high,
        math.nan,
        "the fewest workers not significantly slower than the best (the stable knee); no planned load",
        (
            f"{_tps(cap)}, the best median itself"
            if dev["config_id"] == best["config_id"]
            else f"{_tps(cap)} against the best {_tps(_f(best, 'throughput_tps_median'))} at "
            f"{_workers(int(best['workers']))}"
        )
        + (f"; {stability:.0%} of bootstrap resamples pick it" if math.isfinite(stability) else ""),
    )
    production = _drain_production(group, dev, t, steady)
    staging = _staging(production)
    cap, low, high = _capacity(best)
    high_load = _Tier(
        "high_load",
        best,
        cap,
        low,
        high,
        cap,
        "the highest median throughput, run at it: no headroom",
        f"costs p99 {_f(best, 'e2e_latency_p99_ms_median'):,.1f} ms (the backlog's drain time, not a latency "
        f"at a rate) and a busy rate of {_f(best, 'busy_rate_median'):.2%}; limited by {rec['bottleneck']}: "
        f"{str(rec['bottleneck_evidence']).rstrip('.')}",
    )
    tiers = [development, staging, production, high_load]
    if t.slo_p99_ms:
        for tier in (x for x in tiers if x.meets_slo is None):
            tier.notes.append(
                f"slo_p99_ms={t.slo_p99_ms:g} not checked: a drain measures capacity, not latency at a rate "
                "(sweep workload=steady workload.rate=...)"
            )
    return tiers


# --- rows -------------------------------------------------------------------------


def _headroom(tier: _Tier) -> float:
    if not (math.isfinite(tier.load) and tier.capacity > 0):
        return math.nan
    return 1.0 - tier.load / tier.capacity


def _row(tier: _Tier, rec: pd.Series, t: Thresholds) -> dict[str, object]:
    row = tier.row
    notes = [*tier.notes]
    # the group's confidence already covers the best config's noise
    noisy = row.get("noisy") is True or row.get("noisy") is np.True_
    if noisy and row["config_id"] != rec.get("best_config_id"):
        notes.append(f"this config is noisy (throughput CV {_f(row, 'throughput_tps_cv'):.0%})")
    own = {name: row.get(column) for name, column in CONFIG.items()}
    quoted = {
        "e2e_latency_p99_ms": _f(row, "e2e_latency_p99_ms_median"),
        "e2e_latency_p99_ci_low": _f(row, "e2e_latency_p99_ms_ci_low"),
        "e2e_latency_p99_ci_high": _f(row, "e2e_latency_p99_ms_ci_high"),
        "busy_rate": _f(row, "busy_rate_median"),
    } | tier.quoted
    return {
        **own,
        "e2e_latency_p99_ms": quoted["e2e_latency_p99_ms"],
        "config_id": row["config_id"],
        "workers": int(row["workers"]),
        "capacity_tps": tier.capacity,
        "capacity_ci_low": tier.capacity_low,
        "capacity_ci_high": tier.capacity_high,
        "load_tps": tier.load,
        "headroom": _headroom(tier),
        "sustainable_rate_tps": tier.sustainable,
        "e2e_latency_p99_ci_low": quoted["e2e_latency_p99_ci_low"],
        "e2e_latency_p99_ci_high": quoted["e2e_latency_p99_ci_high"],
        "busy_rate": quoted["busy_rate"],
        "meets_target": tier.meets_target,
        "meets_slo": tier.meets_slo,
        "slo_p99_ms": t.slo_p99_ms,
        "slo_target_tps": t.slo_target_tps,
        "tier_rule": tier.rule,
        "tier_evidence": tier.evidence,
        "tier_confidence": "; ".join([*notes, str(rec.get("confidence"))]),
    }


def _steady_lookup(rates: pd.DataFrame, keys: Sequence[str]) -> _Steady:
    """For a drain's summary row: the sustainable-rate row of the same config under a steady sweep
    (every key but the workload's and ``tasks`` equal; the lowest rate when several match)."""
    shared = [k for k in keys if k in rates.columns and not k.startswith("workload_") and k != "tasks"]

    def steady(row: pd.Series) -> pd.Series | None:
        if rates.empty:
            return None
        match = same_config(rates, row, shared)
        s = pd.to_numeric(match.get("sustainable_rate_tps"), errors="coerce").dropna()
        return None if s.empty else match.loc[s.idxmin()]

    return _Steady(steady, not rates.empty)


def _with_steady_figure(tier: _Tier, steady: pd.Series | None, t: Thresholds) -> None:
    """The steady sweep's sustainable rate is the production figure: capacity, p99 and busy rate."""
    if steady is None:
        return
    tier.sustainable = _f(steady, "sustainable_rate_tps")
    drained = tier.capacity
    tier.capacity, tier.capacity_low, tier.capacity_high = tier.sustainable, math.nan, math.nan
    tier.quoted = {
        name: _f(steady, name)
        for name in ("e2e_latency_p99_ms", "e2e_latency_p99_ci_low", "e2e_latency_p99_ci_high", "busy_rate")
    }
    found = f"a steady sweep of this config sustains {_tps(tier.sustainable)} (its drain: {_tps(drained)})"
    if t.slo_target_tps:
        tier.evidence += f"; {found}: the production figure"
    else:
        tier.load = PRODUCTION_LOAD_SHARE * tier.sustainable
        share = f"{PRODUCTION_LOAD_SHARE:.0%}"
        tier.evidence = f"planned load {share} of the sustainable rate: {found}, the production figure"
    tier.notes = [n for n in tier.notes if not n.startswith("slo_p99_ms")]
    tier.meets_slo = True if t.slo_p99_ms else None


def tiered(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    recs: pd.DataFrame,
    rates: pd.DataFrame,
    keys: list[str],
    t: Thresholds,
) -> pd.DataFrame:
    """The recommendations as four tier rows per group (development first: the old row's config).

    Every row keeps the group's answers (recommended, best, knee, busy onset, bottleneck) from
    ``recs`` at the rate its tier quotes; the config columns (pool, busy, claim, p99, config_id)
    are the tier's own, and the tier columns follow.
    """
    if recs.empty:
        return recs
    lead = group_columns(keys)
    tier_keys = [c for c in lead if c != RATE]
    steady = _steady_lookup(rates, keys)
    rows = []
    for values, group in summary.groupby(tier_keys, dropna=False, sort=True):
        first = dict(zip(tier_keys, values, strict=True))
        own_recs = same_config(recs, pd.Series(first), tier_keys)
        own_rates = same_config(rates, pd.Series(first), tier_keys) if not rates.empty else rates
        if str(first.get("workload_kind")) in OPEN_LOOP and not own_rates.empty:
            tiers = _open_tiers(group, own_rates, keys, t)
            high_load = tiers[-1]
            limit = bottleneck(high_load.row, same_config(measured(frame), high_load.row, keys), None, t)
            high_load.evidence += f"; limited by {limit.name}: {limit.evidence}"
        else:
            rec = own_recs.loc[own_recs["best_throughput_tps"].idxmax()]
            tiers = _drain_tiers(group, rec, t, steady)
        for tier in sorted(tiers, key=lambda x: TIERS.index(x.tier)):
            rec = same_config(own_recs, tier.row, [RATE]).iloc[0]
            rows.append({**rec.to_dict(), "tier": tier.tier, **_row(tier, rec, t)})
    out = pd.DataFrame(rows)
    first_columns = [*lead, "tier"]
    out = out[[*first_columns, *(c for c in out.columns if c not in first_columns)]]
    for column in ("meets_target", "meets_slo"):
        out[column] = out[column].astype("boolean")  # None: no target or SLO to meet
    for column in recs.columns:
        if str(recs[column].dtype) == "Int64":  # integers with gaps stay integers
            out[column] = out[column].astype("Int64")
    return out
