"""The summary: one row per distinct config and host, from measured iterations only.

Medians, means, standard deviations, bootstrap CIs of the median and the
coefficient of variation of throughput, a noise flag, and the medians of the
other measurements. Warmup rows never enter a statistic; hosts are never pooled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qbench.analysis.stats import bootstrap_median_ci, cv, order_median_ci
from qbench.analysis.thresholds import Thresholds
from qbench.results.columns import COLUMNS
from qbench.results.load import REQUIRED

# Harness settings: they do not change what is measured, so they do not tell configs apart.
NOT_A_KEY = {
    "db_keep",
    "metrics_sample_interval_ms",
    "ceiling_enabled",
    "ceiling_tasks",
    "iteration_timeout_s",
    "iterations",
    "warmup",
}
MEDIAN_COLUMNS = (
    "efficiency_tps_per_worker",
    "harness_efficiency",
    "ceiling_tps",
    "e2e_latency_p50_ms",
    "e2e_latency_p95_ms",
    "e2e_latency_p99_ms",
    "claim_latency_p99_ms",
    "busy_rate",
    "retries",
    "lock_wait_total_s",
    "pool_wait_total_s",
    "cpu_util_cores",
    "rss_peak_bytes",
    "duration_s",
    "pool_connections",
)
# Columns drawn with an interval in the plots: a distribution-free CI of the median each.
INTERVAL_COLUMNS = ("busy_rate", "e2e_latency_p99_ms")
# Medians taken when the files have the column (newer schema versions or some executors only).
OPTIONAL_MEDIAN_COLUMNS = ("process_cpu_util_max_cores",)


def key_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns that tell configs apart, plus the host (hosts are never pooled)."""
    # Every declared measurement or identity column (optional blocks included) is not a key;
    # what is left are the config columns flattened from the settings.
    config = [c for c in frame.columns if c not in REQUIRED and c not in NOT_A_KEY and c not in COLUMNS]
    return ["host", *config, "workers"]


def config_id(values: Sequence[object]) -> str:
    return hashlib.sha1(json.dumps([str(v) for v in values]).encode()).hexdigest()[:10]


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["phase"] == "measure"]


def same_config(table: pd.DataFrame, row: pd.Series, keys: Sequence[str]) -> pd.DataFrame:
    """Rows of ``table`` equal to ``row`` on every key ``table`` has (missing values equal too)."""
    for key in keys:
        if key in table.columns:
            column = table[key]
            table = table[(column == row[key]) | (column.isna() & pd.isna(row[key]))]
    return table


def iterations_by_config(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Measured throughputs of each config, keyed by the summary's ``config_id``."""
    keys = key_columns(frame)
    return {
        config_id(values): group["throughput_tps"].to_numpy(dtype=float)
        for values, group in measured(frame).groupby(keys, dropna=False, sort=False)
    }


def summarize(frame: pd.DataFrame, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """One row per distinct config and host, from measured iterations only."""
    thresholds = thresholds or Thresholds()
    data = measured(frame)
    keys = key_columns(frame)
    median_columns = [*MEDIAN_COLUMNS, *(c for c in OPTIONAL_MEDIAN_COLUMNS if c in data.columns)]
    numeric = data[median_columns].apply(pd.to_numeric, errors="coerce")
    counted = data[[*keys, "run_id", "tasks_lost", "tasks_duplicated", "throughput_tps"]]
    grouped = pd.concat([counted, numeric], axis=1).groupby(keys, dropna=False, sort=True)
    medians = grouped[median_columns].median()
    intervals = {c: grouped[c].agg(lambda s: order_median_ci(s.to_numpy(float))) for c in INTERVAL_COLUMNS}
    jobs = grouped["run_id"].nunique()
    lost = grouped["tasks_lost"].sum()
    duplicated = grouped["tasks_duplicated"].sum()
    rows = []
    for position, (values, tps_series) in enumerate(grouped["throughput_tps"]):
        tps = tps_series.to_numpy(dtype=float)
        low, high = bootstrap_median_ci(tps, resamples=thresholds.bootstrap_resamples)
        variation = cv(tps)
        row: dict[str, object] = dict(zip(keys, values, strict=True))
        row.update(
            config_id=config_id(values),
            iterations=len(tps),
            jobs=int(jobs.iloc[position]),
            throughput_tps_median=float(np.median(tps)),
            throughput_tps_mean=float(np.mean(tps)),
            throughput_tps_stdev=float(np.std(tps, ddof=1)) if len(tps) > 1 else float("nan"),
            throughput_tps_ci_low=low,
            throughput_tps_ci_high=high,
            throughput_tps_cv=variation,
            noisy=bool(variation > thresholds.cv) if not np.isnan(variation) else False,
            tasks_lost_total=int(lost.iloc[position]),
            tasks_duplicated_total=int(duplicated.iloc[position]),
        )
        for column in median_columns:
            row[f"{column}_median"] = float(medians[column].iloc[position])
        for column, ci in intervals.items():
            row[f"{column}_ci_low"], row[f"{column}_ci_high"] = ci.iloc[position]
        rows.append(row)
    return pd.DataFrame(rows)
