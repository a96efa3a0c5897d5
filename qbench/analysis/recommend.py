"""Recommendations, derived from the summary and the iterations — never hard-coded.

Per workload and storage setting (host, workload, journal mode, synchronous):
the config with the best median throughput; the knee (smallest worker count
on that curve within ``knee_fraction`` of the best); where busy errors begin
(first worker count whose median busy rate exceeds ``busy_rate``); the
pool, busy policy and transaction mode of the best config; its expected
throughput with CI and p99 latency; the bottleneck named from the data with
the figure that shows it; and a confidence note. Comparisons between
configs live in :mod:`qbench.analysis.comparisons`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qbench.analysis.stats import compare_samples
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


def _bottleneck(
    row: pd.Series, frame_rows: pd.DataFrame, usl: pd.Series | None, t: Thresholds
) -> tuple[str, str]:
    """Name what limits the best config, with the figure that shows it."""
    workers = max(int(row["workers"]), 1)
    duration = float(row["duration_s_median"]) or float("nan")
    tasks = float(frame_rows["tasks_completed"].median()) if len(frame_rows) else float("nan")
    pool_share = row["pool_wait_total_s_median"] / (duration * workers)
    lock_share = row["lock_wait_total_s_median"] / (duration * workers)
    retries = row["retries_median"] / tasks if tasks else float("nan")
    if pool_share > t.pool_wait_share:
        return "pool exhaustion", (
            f"workers spent {pool_share:.0%} of their time waiting for one of "
            f"{int(row['pool_connections_median'])} pooled connections"
        )
    if retries > t.retries_per_task:
        return "crosstalk and retries", (
            f"{retries:.2f} retries per task, busy rate {row['busy_rate_median']:.2%}"
        )
    # The fitted law is evidence only where it fits (status ok: R^2 >= 0.8).
    fits = usl is not None and usl.get("usl_status") == "ok"
    peak = float(usl["usl_n_star"]) if fits and usl is not None else math.inf
    if usl is not None and math.isfinite(peak) and usl["workers_min"] <= peak < usl["workers_max"]:
        return "crosstalk and retries", (
            f"USL coherency kappa={usl['usl_kappa']:.3g}: throughput peaks at "
            f"N*={peak:.1f} workers and falls beyond it"
        )
    # Only BEGIN IMMEDIATE times the lock alone; in autocommit and deferred modes the timed
    # statement includes its own execution, so its share is an upper bound, not evidence.
    if row.get("claim_tx") == "immediate" and lock_share > t.lock_wait_share:
        return "serialization on the write lock", (
            f"workers spent {lock_share:.0%} of their time waiting for the write lock"
        )
    if fits and usl is not None and usl["usl_sigma"] > 0.5:
        return "serialization on the write lock", (
            f"USL contention sigma={usl['usl_sigma']:.2f}: adding workers adds almost no throughput"
        )
    if row["cpu_util_cores_median"] >= t.cpu_cores:
        return "CPU saturation", f"the process kept {row['cpu_util_cores_median']:.2f} cores busy"
    efficiency = row["harness_efficiency_median"]
    if not math.isfinite(efficiency):
        return "none identified", "no ceiling was measured (ceiling.enabled=false) to compare against"
    if row["synchronous"] in ("full", "extra") and efficiency >= 0.5:
        return "fsync-bound I/O", (
            f"synchronous={row['synchronous']} and the workers reach {efficiency:.0%} of the "
            f"single-connection ceiling ({row['ceiling_tps_median']:,.0f} tasks/s), which the fsyncs bound"
        )
    if efficiency < 0.5:
        return "per-statement round trips", (
            f"the workers reach {efficiency:.0%} of the single-connection sqlite3 ceiling "
            f"({row['ceiling_tps_median']:,.0f} tasks/s): time goes to the async driver, not to SQLite"
        )
    return "none identified", f"the workers reach {efficiency:.0%} of the single-connection ceiling"


@dataclass(frozen=True)
class _Choice:
    """What the data pick within one workload and storage setting."""

    # the config with the best median throughput
    best: pd.Series
    # the summary rows on the best config's curve (every key but workers fixed), by workers
    on_curve: pd.DataFrame
    # the fewest workers on that curve within knee_fraction of the best
    knee: pd.Series
    # the first worker count on that curve whose median busy rate exceeds the threshold
    busy_onset: int | None
    # the curve's row of the scaling table, if it has one
    usl: pd.Series | None


def _choose(group: pd.DataFrame, scaling: pd.DataFrame, curve_keys: list[str], t: Thresholds) -> _Choice:
    """The best config of one group, the knee and the busy onset on its curve, and its fit."""
    best = group.loc[group["throughput_tps_median"].idxmax()]
    on_curve = same_config(group, best, curve_keys).sort_values("workers")
    target = t.knee_fraction * best["throughput_tps_median"]
    knee = on_curve[on_curve["throughput_tps_median"] >= target].iloc[0]
    busy = on_curve[on_curve["busy_rate_median"] > t.busy_rate]
    onset = int(busy.iloc[0]["workers"]) if len(busy) else None
    usl = None
    if not scaling.empty:
        match = same_config(scaling, best, curve_keys)
        usl = match.iloc[0] if len(match) else None
    return _Choice(best, on_curve, knee, onset, usl)


def _confidence(choice: _Choice, samples: dict[str, np.ndarray], t: Thresholds) -> str:
    """Why (not) to trust a recommendation: noise, too few points, a poor fit, an unclear best."""
    best, on_curve, knee, usl = choice.best, choice.on_curve, choice.knee, choice.usl
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
        notes.append(f"only {levels} worker count(s) measured on this curve")
    if int(knee["workers"]) != int(best["workers"]):
        test = compare_samples(samples[knee["config_id"]], samples[best["config_id"]], alpha=t.alpha)
        if not test.significant:
            notes.append(
                f"best ({int(best['workers'])} workers) and knee ({int(knee['workers'])}) are not "
                f"significantly different (p={test.p_value:.2g}): prefer the knee"
            )
    if best["iterations"] < 3:
        notes.append(f"only {int(best['iterations'])} measured iteration(s): no confidence interval")
    return "; ".join(notes) if notes else "high: low noise, enough points"


def _recommendation_row(
    group: dict[str, object], choice: _Choice, bottleneck: tuple[str, str], confidence: str, t: Thresholds
) -> dict[str, object]:
    """One recommendations row: what it is for, then the choice and its evidence."""
    best = choice.best
    name, evidence = bottleneck
    return {
        **group,
        "best_workers": int(best["workers"]),
        "best_throughput_tps": best["throughput_tps_median"],
        "best_throughput_ci_low": best["throughput_tps_ci_low"],
        "best_throughput_ci_high": best["throughput_tps_ci_high"],
        "knee_workers": int(choice.knee["workers"]),
        "knee_fraction": t.knee_fraction,
        "busy_onset_workers": choice.busy_onset,
        "busy_threshold": t.busy_rate,
        "pool_kind": best.get("pool_kind"),
        "pool_connections": best.get("pool_connections_median"),
        "busy_policy": best.get("busy_policy"),
        "busy_timeout_ms": best.get("busy_timeout_ms"),
        "claim_tx": best.get("claim_tx"),
        "claim_batch": best.get("claim_batch"),
        "e2e_latency_p99_ms": best["e2e_latency_p99_ms_median"],
        "bottleneck": name,
        "bottleneck_evidence": evidence,
        "confidence": confidence,
        "config_id": best["config_id"],
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
        choice = _choose(group, scaling, curve_keys, t)
        best_iterations = same_config(iterations, choice.best, keys)
        bottleneck = _bottleneck(choice.best, best_iterations, choice.usl, t)
        rows.append(
            _recommendation_row(
                dict(zip(group_keys, group_values, strict=True)),
                choice,
                bottleneck,
                _confidence(choice, samples, t),
                t,
            )
        )
    out = pd.DataFrame(rows)
    out["busy_onset_workers"] = out["busy_onset_workers"].astype("Int64")
    return out
