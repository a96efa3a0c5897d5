"""Deployment tiers of an open-loop workload, over its configs' sustainable rates.

The rules are stated in :mod:`qbench.analysis.tiers`; capacity here is a
config's sustainable rate (:mod:`qbench.analysis.sustainable`), and the p99
and busy rate quoted are those measured at the rate the tier runs at (the
smallest rate tried at or above its planned load).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from qbench.analysis.summary import same_config
from qbench.analysis.sustainable import RATE
from qbench.analysis.thresholds import Thresholds
from qbench.analysis.tier_model import PRODUCTION_LOAD_SHARE, _f, _resources, _staging, _Tier, _tps

# --- open loop --------------------------------------------------------------------


def _at_rate(
    group: pd.DataFrame, config_row: pd.Series, config: Sequence[str], load: float, s: float
) -> pd.Series:
    """The config's summary row at the smallest rate tried at or above ``load``; without one, at its
    sustainable rate ``s``; when it kept up at no rate, at its lowest rate."""
    rows = same_config(group, config_row, config).sort_values(RATE)
    rate = rows[RATE].astype(float)
    above = rows[rate >= load] if math.isfinite(load) else rows.iloc[0:0]
    if len(above):
        return above.iloc[0]
    kept = rows[rate <= s] if math.isfinite(s) else rows.iloc[0:0]
    return kept.iloc[-1] if len(kept) else rows.iloc[0]


def _open_tier(
    tier: str,
    group: pd.DataFrame,
    r: pd.Series,
    config: Sequence[str],
    load: float,
    t: Thresholds,
    **kw: object,
) -> _Tier:
    s = _f(r, "sustainable_rate_tps")
    row = _at_rate(group, r, config, load if math.isfinite(load) else s, s)
    p99 = _f(row, "e2e_latency_p99_ms_median")
    meets_slo = bool(p99 <= t.slo_p99_ms) if t.slo_p99_ms else None
    out = _Tier(tier, row, s, math.nan, math.nan, load, "", "", meets_slo=meets_slo, sustainable=s)
    for key, value in kw.items():
        setattr(out, key, value)
    if not math.isfinite(s):
        out.notes.append(f"kept up at no rate tried (at {_tps(_f(r, 'limit_rate_tps'))}: {r['limit']})")
    return out


def _configs(n: int) -> str:
    return f"{n} config{'' if n == 1 else 's'}"


def _open_tiers(group: pd.DataFrame, rates: pd.DataFrame, keys: Sequence[str], t: Thresholds) -> list[_Tier]:
    config = [k for k in keys if k != RATE]
    s = rates["sustainable_rate_tps"].astype(float)
    top = s.max()
    found = rates[s == top] if math.isfinite(top) else rates
    dev = _resources(found, "pool_connections").iloc[0]
    development = _open_tier(
        "development",
        group,
        dev,
        config,
        math.nan,
        t,
        rule="the fewest resources sustaining the highest sustainable rate; no planned load",
        evidence=f"sustains {_tps(_f(dev, 'sustainable_rate_tps'))}, the highest of {_configs(len(rates))}",
    )
    production = _open_production(group, rates, found, dev, config, t)
    staging = _staging(production)
    staging.row = _at_rate(group, production.row, config, staging.load, production.sustainable)
    if t.slo_p99_ms:  # staging quotes its own (lower) rate
        staging.meets_slo = bool(_f(staging.row, "e2e_latency_p99_ms_median") <= t.slo_p99_ms)
    p99 = pd.to_numeric(group["e2e_latency_p99_ms_median"], errors="coerce")
    by_p99 = {cid: v for cid, v in zip(group["config_id"], p99, strict=True)}
    best = found.assign(_p99=found["config_id"].map(by_p99)).sort_values("_p99", kind="stable").iloc[0]
    high_load = _open_tier(
        "high_load",
        group,
        best,
        config,
        _f(best, "sustainable_rate_tps"),
        t,
        rule="the highest sustainable rate (ties: the lower p99), run at it: no headroom",
        evidence=_limit(best),
    )
    return [development, staging, production, high_load]


def _open_production(
    group: pd.DataFrame,
    rates: pd.DataFrame,
    found: pd.DataFrame,
    dev: pd.Series,
    config: Sequence[str],
    t: Thresholds,
) -> _Tier:
    """Production on a rate sweep: the fewest resources carrying the target with headroom, or
    development's config at a stated share of its sustainable rate."""
    s = rates["sustainable_rate_tps"].astype(float)
    share = PRODUCTION_LOAD_SHARE
    if t.slo_target_tps:
        need = t.slo_target_tps / share
        fits = rates[s >= need]
        r = _resources(fits, "pool_connections").iloc[0] if len(fits) else found.iloc[0]
        production = _open_tier(
            "production",
            group,
            r,
            config,
            t.slo_target_tps,
            t,
            meets_target=bool(len(fits)),
            rule=f"the fewest resources whose sustainable rate carries slo_target_tps={t.slo_target_tps:g} "
            f"at no more than {share:.0%} of it",
            evidence=f"sustains {_tps(_f(r, 'sustainable_rate_tps'))} against {_tps(need)} needed",
        )
        if not len(fits):
            production.notes.append(f"no config measured sustains the target with {1 - share:.0%} headroom")
    else:
        load = share * _f(dev, "sustainable_rate_tps")
        production = _open_tier(
            "production",
            group,
            dev,
            config,
            load,
            t,
            rule=f"development's config at {share:.0%} of its sustainable rate: no target rate given",
            evidence=f"planned load {share:.0%} of {_tps(_f(dev, 'sustainable_rate_tps'))}",
        )
    return production


def _limit(r: pd.Series) -> str:
    rate = _f(r, "limit_rate_tps")
    return f"at {_tps(rate)}: {r['limit']}" if math.isfinite(rate) else str(r["limit"])
