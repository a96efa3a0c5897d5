"""Recommendations and comparisons, derived from the summary and the iterations — never hard-coded.

Per workload and storage setting (host, workload, journal mode, synchronous):
the config with the best median throughput; the knee (smallest worker count
on that curve within ``knee_fraction`` of the best); where busy errors begin
(first worker count whose median busy rate exceeds ``busy_rate``); the
pool, busy policy and transaction mode of the best config; its expected
throughput with CI and p99 latency; the bottleneck named from the data with
the figure that shows it; and a confidence note.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pandas as pd

from qbench.analysis.stats import compare_samples
from qbench.analysis.summary import iterations_by_config, measured
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


def _same_config(table: pd.DataFrame, row: pd.Series, keys: Sequence[str]) -> pd.DataFrame:
    """Rows of ``table`` equal to ``row`` on every key ``table`` has (missing values equal too)."""
    for key in keys:
        if key in table.columns:
            column = table[key]
            table = table[(column == row[key]) | (column.isna() & pd.isna(row[key]))]
    return table


def group_columns(keys: Sequence[str]) -> list[str]:
    """What a recommendation row is for: the lead columns, then every other non-knob key."""
    return [*LEAD, *(k for k in keys if k not in KNOBS and k not in LEAD)]


# Keys compared one at a time; a tuple moves together (a journal brings its synchronous level).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "journal": ("journal_mode", "synchronous"),
    "claim_tx": ("claim_tx",),
    "busy_policy": ("busy_policy",),
    "pool": ("pool_kind", "pool_size", "pool_ratio"),
}


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


def recommendations(
    frame: pd.DataFrame, summary: pd.DataFrame, scaling: pd.DataFrame, keys: list[str], t: Thresholds
) -> pd.DataFrame:
    """One row per workload and storage setting that was swept."""
    if summary.empty:
        return pd.DataFrame()
    curve_keys = [k for k in keys if k != "workers"]
    samples = iterations_by_config(frame)
    group_keys = group_columns(keys)
    rows = []
    for group_values, group in summary.groupby(group_keys, dropna=False, sort=True):
        best = group.loc[group["throughput_tps_median"].idxmax()]
        on_curve = _same_config(group, best, curve_keys).sort_values("workers")
        target = t.knee_fraction * best["throughput_tps_median"]
        knee = on_curve[on_curve["throughput_tps_median"] >= target].iloc[0]
        busy = on_curve[on_curve["busy_rate_median"] > t.busy_rate]
        onset = int(busy.iloc[0]["workers"]) if len(busy) else None
        usl = None
        if not scaling.empty:
            match = _same_config(scaling, best, curve_keys)
            usl = match.iloc[0] if len(match) else None
        name, evidence = _bottleneck(best, _same_config(measured(frame), best, keys), usl, t)
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
        rows.append(
            {
                **dict(zip(group_keys, group_values, strict=True)),
                "best_workers": int(best["workers"]),
                "best_throughput_tps": best["throughput_tps_median"],
                "best_throughput_ci_low": best["throughput_tps_ci_low"],
                "best_throughput_ci_high": best["throughput_tps_ci_high"],
                "knee_workers": int(knee["workers"]),
                "knee_fraction": t.knee_fraction,
                "busy_onset_workers": onset,
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
                "confidence": "; ".join(notes) if notes else "high: low noise, enough points",
                "config_id": best["config_id"],
            }
        )
    out = pd.DataFrame(rows)
    out["busy_onset_workers"] = out["busy_onset_workers"].astype("Int64")
    return out


def comparisons(frame: pd.DataFrame, summary: pd.DataFrame, keys: list[str], t: Thresholds) -> pd.DataFrame:
    """Pairs of configs that differ in exactly one dimension: rank test and effect with CI.

    With up to three values of the dimension every pair is compared; with more, each
    value is compared against the best of them.
    """
    samples = iterations_by_config(frame)
    rows = []
    for dimension, columns in DIMENSIONS.items():
        present = [c for c in columns if c in summary.columns]
        if not present:
            continue
        others = [k for k in keys if k not in present]
        for context_values, group in summary.groupby(others, dropna=False, sort=True):
            variants = group.drop_duplicates(present)
            if len(variants) < 2:
                continue
            context = dict(zip(others, context_values, strict=True))
            records = [row for _, row in variants.iterrows()]
            if len(records) <= 3:
                pairs = list(itertools.combinations(records, 2))
            else:
                # Many values of one knob: each against the best of them, not every pair.
                best = max(records, key=lambda r: r["throughput_tps_median"])
                pairs = [(r, best) for r in records if r["config_id"] != best["config_id"]]
            for a, b in pairs:
                test = compare_samples(
                    samples[a["config_id"]],
                    samples[b["config_id"]],
                    alpha=t.alpha,
                    resamples=t.bootstrap_resamples,
                )
                rows.append(
                    {
                        "host": context.get("host"),
                        "key": dimension,
                        "value_a": "/".join(str(a[c]) for c in present),
                        "value_b": "/".join(str(b[c]) for c in present),
                        "context": f"workers={context.get('workers')}",
                        "throughput_a_tps": test.median_a,
                        "throughput_b_tps": test.median_b,
                        "ratio": test.ratio,
                        "ratio_ci_low": test.ratio_ci_low,
                        "ratio_ci_high": test.ratio_ci_high,
                        "p_value": test.p_value,
                        "significant": test.significant,
                        "config_id_a": a["config_id"],
                        "config_id_b": b["config_id"],
                    }
                )
    return pd.DataFrame(rows)
