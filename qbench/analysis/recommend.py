"""Recommendations, derived from the summary and the iterations — never hard-coded.

Per workload and storage setting (host, workload, journal mode, synchronous):
the config with the best median throughput; the recommended worker count
(the fewest workers on its curve not significantly slower than the best, with
its bootstrap stability: :mod:`qbench.analysis.knee`); the knee (smallest
worker count on that curve within ``knee_fraction`` of the best); where busy errors begin
(first worker count whose median busy rate exceeds ``busy_rate``, or the
largest count tried when they never did; per busy timeout, and the busy
timeout the measured lock waits ask for: :mod:`qbench.analysis.busy`); the
pool, busy policy and transaction mode of the best config; its expected
throughput with CI and p99 latency; the bottleneck named from the data with
the figure that shows it and the advice (:mod:`qbench.analysis.bottleneck`); and a
confidence note. Comparisons between
configs live in :mod:`qbench.analysis.comparisons`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qbench.analysis.bottleneck import Bottleneck, bottleneck
from qbench.analysis.busy import busy_columns
from qbench.analysis.knee import Pick, Point, stable_knee
from qbench.analysis.summary import iterations_by_config, measured, same_config
from qbench.analysis.thresholds import Thresholds

# The knobs a recommendation chooses among; every other key (host, workload, storage,
# service time, payload, backlog, history) defines what is being recommended for.
KNOBS = {
    "workers",
    "pool_kind",
    "pool_size",
    "pool_ratio",
    "busy_policy",
    "busy_timeout_ms",
    "busy_max_retries",
    "busy_backoff_base_ms",
    "busy_backoff_cap_ms",
    "claim_tx",
    "claim_batch",
    "queue_lease_s",
    "queue_enqueue_batch",
    "queue_poll_interval_ms",
    "journal_wal_autocheckpoint_pages",
    "metrics_level",
}
LEAD = ["host", "workload_kind", "journal_mode", "synchronous"]


def group_columns(keys: Sequence[str]) -> list[str]:
    """What a recommendation row is for: the lead columns, then every other non-knob key."""
    return [*LEAD, *(k for k in keys if k not in KNOBS and k not in LEAD)]


@dataclass(frozen=True)
class _Choice:
    """What the data pick within one workload and storage setting."""

    # the config with the best median throughput
    best: pd.Series
    # the fewest workers on the best config's curve not significantly slower than it
    recommended: pd.Series
    # share of bootstrap resamples of the iterations that recommend the same worker count
    stability: float
    # the summary rows on the best config's curve (every key but workers fixed), by workers
    on_curve: pd.DataFrame
    # the fewest workers on that curve within knee_fraction of the best median
    knee: pd.Series
    # the first worker count on that curve whose median busy rate exceeds the threshold
    busy_onset: int | None
    # the curve's row of the scaling table, if it has one
    usl: pd.Series | None


def _pick(group: pd.DataFrame, curve_keys: list[str], samples: dict[str, np.ndarray], t: Thresholds) -> Pick:
    """The stable-knee rule over one group; configs without a finite iteration take no part."""
    # each row's curve: its curve keys as text, column by column (not row by row: far faster)
    texts = [group[k].astype(str).tolist() for k in curve_keys]
    curves = list(zip(*texts, strict=True)) if texts else [()] * len(group)
    curve_number = {c: i for i, c in enumerate(dict.fromkeys(curves))}
    points, index = [], []
    rows = zip(group["config_id"].tolist(), group["workers"].tolist(), strict=True)
    for position, (config_id, workers) in enumerate(rows):
        x = np.asarray(samples.get(config_id, np.empty(0)), dtype=float)
        x = x[np.isfinite(x)]
        if x.size:
            points.append(Point(curve_number[curves[position]], int(workers), x))
            index.append(position)
    pick = stable_knee(points, alpha=t.alpha)
    return Pick(index[pick.best], index[pick.recommended], pick.stability, pick.resamples)


def _choose(
    group: pd.DataFrame,
    scaling: pd.DataFrame,
    curve_keys: list[str],
    samples: dict[str, np.ndarray],
    t: Thresholds,
) -> _Choice:
    """The best and the recommended config of one group, the knee and busy onset on its curve, its fit."""
    pick = _pick(group, curve_keys, samples, t)
    best, recommended = group.iloc[pick.best], group.iloc[pick.recommended]
    on_curve = same_config(group, best, curve_keys).sort_values("workers")
    target = t.knee_fraction * best["throughput_tps_median"]
    knee = on_curve[on_curve["throughput_tps_median"] >= target].iloc[0]
    busy = on_curve[on_curve["busy_rate_median"] > t.busy_rate]
    onset = int(busy.iloc[0]["workers"]) if len(busy) else None
    usl = None
    if not scaling.empty:
        match = same_config(scaling, best, curve_keys)
        usl = match.iloc[0] if len(match) else None
    return _Choice(best, recommended, pick.stability, on_curve, knee, onset, usl)


# Below this stability the confidence note says the recommended count is not settled.
UNSTABLE = 0.8


def _confidence(choice: _Choice, t: Thresholds) -> str:
    """Why (not) to trust a recommendation: noise, too few points, a poor fit, an unstable pick."""
    best, on_curve, usl = choice.best, choice.on_curve, choice.usl
    notes = []
    if best["noisy"]:
        notes.append(f"noisy: throughput CV {best['throughput_tps_cv']:.0%} > {t.cv:.0%}")
    noisy = int(on_curve["noisy"].sum())
    if noisy and not best["noisy"]:
        notes.append(f"{noisy} of {len(on_curve)} points on this curve are noisy (CV > {t.cv:.0%})")
    if usl is not None and usl.get("usl_status") not in (None, "ok"):
        notes.append(f"scaling fit {usl['usl_status']}: {str(usl['usl_message']).rstrip('.')}")
    levels = on_curve["workers"].nunique()
    if levels < 3:
        notes.append(f"only {levels} worker {'count' if levels == 1 else 'counts'} measured on this curve")
    if choice.stability < UNSTABLE:
        notes.append(
            f"unstable: {choice.stability:.0%} of bootstrap resamples recommend "
            f"{int(choice.recommended['workers'])} workers"
        )
    if best["iterations"] < 3:
        n = int(best["iterations"])
        notes.append(f"only {n} measured {'iteration' if n == 1 else 'iterations'}: no confidence interval")
    return "; ".join(notes) if notes else "high: low noise, enough points, a stable pick"


def _recommendation_row(
    group: dict[str, object], choice: _Choice, found: Bottleneck, confidence: str, t: Thresholds
) -> dict[str, object]:
    """One recommendations row: what it is for, then the choice and its evidence."""
    best, chosen = choice.best, choice.recommended
    return {
        **group,
        "recommended_workers": int(chosen["workers"]),
        "workers_stability": choice.stability,
        "recommended_throughput_tps": chosen["throughput_tps_median"],
        "recommended_throughput_ci_low": chosen["throughput_tps_ci_low"],
        "recommended_throughput_ci_high": chosen["throughput_tps_ci_high"],
        "best_workers": int(best["workers"]),
        "best_throughput_tps": best["throughput_tps_median"],
        "best_throughput_ci_low": best["throughput_tps_ci_low"],
        "best_throughput_ci_high": best["throughput_tps_ci_high"],
        "knee_workers": int(choice.knee["workers"]),
        "knee_fraction": t.knee_fraction,
        "busy_onset_workers": choice.busy_onset,
        "busy_threshold": t.busy_rate,
        "pool_kind": chosen.get("pool_kind"),
        "pool_connections": chosen.get("pool_connections_median"),
        "busy_policy": chosen.get("busy_policy"),
        "busy_timeout_ms": chosen.get("busy_timeout_ms"),
        "claim_tx": chosen.get("claim_tx"),
        "claim_batch": chosen.get("claim_batch"),
        "e2e_latency_p99_ms": chosen["e2e_latency_p99_ms_median"],
        "bottleneck": found.name,
        "bottleneck_evidence": found.evidence,
        "bottleneck_advice": found.advice,
        "confidence": confidence,
        "config_id": chosen["config_id"],
        "best_config_id": best["config_id"],
    }


def recommendations(
    frame: pd.DataFrame, summary: pd.DataFrame, scaling: pd.DataFrame, keys: list[str], t: Thresholds
) -> pd.DataFrame:
    """One row per workload and storage setting that was swept."""
    if summary.empty:
        return pd.DataFrame()
    curve_keys = [k for k in keys if k != "workers"]
    samples = iterations_by_config(frame)
    iterations = measured(frame)
    group_keys = group_columns(keys)
    rows = []
    for group_values, group in summary.groupby(group_keys, dropna=False, sort=True):
        choice = _choose(group, scaling, curve_keys, samples, t)
        best_iterations = same_config(iterations, choice.best, keys)
        found = bottleneck(choice.best, best_iterations, choice.usl, t)
        row = _recommendation_row(
            dict(zip(group_keys, group_values, strict=True)), choice, found, _confidence(choice, t), t
        )
        # where busy errors begin per busy timeout, and the timeout the lock waits ask for
        row |= busy_columns(group, iterations, choice.recommended, choice.on_curve, keys, t)
        rows.append(row)
    out = pd.DataFrame(rows)
    for column in ("busy_onset_workers", "busy_onset_tried_workers", "busy_timeout_recommended_ms"):
        out[column] = out[column].astype("Int64")
    return out
