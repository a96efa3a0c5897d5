"""The summary: one row per distinct config and host, from measured iterations only.

Medians, means, standard deviations, bootstrap CIs of the median and the
coefficient of variation of throughput, a noise flag, and the medians of the
other measurements. Warmup rows never enter a statistic; hosts are never pooled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from qbench.analysis.stats import bootstrap_median_cis, cv, order_median_ci
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
OPTIONAL_MEDIAN_COLUMNS = ("process_cpu_util_max_cores", "ceiling_tps_spread")


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
    # Key by key over the rows still matching, narrowing their positions: only the key's own
    # column is taken each time, never the whole table.
    positions = np.arange(len(table))
    for key in keys:
        if key in table.columns:
            column = table[key].iloc[positions]
            keep = (column == row[key]) | (column.isna() & pd.isna(row[key]))
            positions = positions[keep.to_numpy(dtype=bool, na_value=False)]
    return table.iloc[positions]


def _groups(data: pd.DataFrame, keys: list[str]) -> tuple[list[tuple[object, ...]], NDArray[np.intp]]:
    """The distinct key values of ``data`` in sorted order (missing values kept), and each
    row's group number among them, without iterating the groups in pandas."""
    grouped = data.groupby(keys, dropna=False, sort=True)
    codes = grouped.ngroup().to_numpy(dtype=np.intp)
    values = [tuple(v) for v in grouped.size().index]
    return values, codes


def _split(values: NDArray[Any], codes: NDArray[np.intp], count: int) -> list[NDArray[Any]]:
    """``values`` split by group number, each group in row order."""
    order = np.argsort(codes, kind="stable")
    return np.split(values[order], np.cumsum(np.bincount(codes, minlength=count))[:-1])


def iterations_by_config(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Measured throughputs of each config, keyed by the summary's ``config_id``."""
    data = measured(frame)
    values, codes = _groups(data, key_columns(frame))
    tps = _split(data["throughput_tps"].to_numpy(dtype=float), codes, len(values))
    return {config_id(v): x for v, x in zip(values, tps, strict=True)}


# Configs whose bootstrap CIs are taken in one call: their resample medians (configs x resamples,
# 4 MB at 2,000 resamples) are all that call holds, not those of thousands of configs at once.
CI_SLICE = 250


def _median_cis(throughputs: list[NDArray[Any]], resamples: int) -> NDArray[np.float64]:
    """:func:`bootstrap_median_cis` of every config, a slice of configs at a time: the same CIs as
    one call (each sample size's resamples are drawn from the same seed in every call)."""
    parts = [
        bootstrap_median_cis(throughputs[start : start + CI_SLICE], resamples=resamples)
        for start in range(0, len(throughputs), CI_SLICE)
    ]
    return np.concatenate(parts) if parts else np.full((0, 2), np.nan)


def summarize(frame: pd.DataFrame, thresholds: Thresholds | None = None) -> pd.DataFrame:
    """One row per distinct config and host, from measured iterations only.

    Per-group statistics run on numpy arrays split by group number (not per pandas group),
    and the bootstrap CIs of groups of one size in one batch (:func:`bootstrap_median_cis`).
    """
    thresholds = thresholds or Thresholds()
    data = measured(frame)
    keys = key_columns(frame)
    median_columns = [*MEDIAN_COLUMNS, *(c for c in OPTIONAL_MEDIAN_COLUMNS if c in data.columns)]
    numeric = data[median_columns].apply(pd.to_numeric, errors="coerce")
    # expected losses (at_most_once queues with workers killed) and kills: in files that have them
    optional_totals = [c for c in ("tasks_lost_expected", "faults_injected") if c in data.columns]
    counted = data[[*keys, "run_id", "tasks_lost", "tasks_duplicated", *optional_totals, "throughput_tps"]]
    grouped = pd.concat([counted, numeric], axis=1).groupby(keys, dropna=False, sort=True)
    medians = grouped[median_columns].median()
    jobs = grouped["run_id"].nunique().to_numpy()
    lost = grouped["tasks_lost"].sum().to_numpy()
    duplicated = grouped["tasks_duplicated"].sum().to_numpy()
    totals = {c: grouped[c].sum().to_numpy() for c in optional_totals}
    values, codes = _groups(data, keys)
    count = len(values)
    throughputs = _split(data["throughput_tps"].to_numpy(dtype=float), codes, count)
    cis = _median_cis(throughputs, thresholds.bootstrap_resamples)
    intervals = {
        c: [order_median_ci(x) for x in _split(numeric[c].to_numpy(dtype=float), codes, count)]
        for c in INTERVAL_COLUMNS
    }
    median_values = {c: medians[c].to_numpy(dtype=float) for c in median_columns}
    rows = []
    for position, (key_values, tps) in enumerate(zip(values, throughputs, strict=True)):
        variation = cv(tps)
        row: dict[str, object] = dict(zip(keys, key_values, strict=True))
        row.update(
            config_id=config_id(key_values),
            iterations=len(tps),
            jobs=int(jobs[position]),
            throughput_tps_median=float(np.median(tps)),
            throughput_tps_mean=float(np.mean(tps)),
            throughput_tps_stdev=float(np.std(tps, ddof=1)) if len(tps) > 1 else float("nan"),
            throughput_tps_ci_low=float(cis[position, 0]),
            throughput_tps_ci_high=float(cis[position, 1]),
            throughput_tps_cv=variation,
            noisy=bool(variation > thresholds.cv) if not np.isnan(variation) else False,
            tasks_lost_total=int(lost[position]),
            tasks_duplicated_total=int(duplicated[position]),
        )
        for column, summed in totals.items():
            row[f"{column}_total"] = int(summed[position])
        for column in median_columns:
            row[f"{column}_median"] = float(median_values[column][position])
        for column, ci in intervals.items():
            row[f"{column}_ci_low"], row[f"{column}_ci_high"] = ci[position]
        rows.append(row)
    return pd.DataFrame(rows)
