"""What limits a config, named from the data with the figures that show it, and the advice it implies.

The order of the checks is the point: measured waits first (pool, worker
process), then measured retries and lock waits, then the fitted law, and only
a fit whose status is ``ok``. A saturated worker process comes before any
SQLite explanation: when one Python process keeps a core busy while the
workers reach a small share of what SQLite does alone (the ceiling), the
limit is the process, and no scaling law fitted to its throughput says
anything about SQLite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from qbench.analysis.thresholds import Thresholds

# Below this share of the single-connection ceiling the workers are "well below" it.
WELL_BELOW_CEILING = 0.5
# Throughput within this share of workers x 1000 / service_ms: the workers are busy serving tasks.
SERVICE_BOUND_SHARE = 0.8
# The per-process CPU column the process executor writes (optional: older files lack it).
PROCESS_CPU = "process_cpu_util_max_cores_median"


@dataclass(frozen=True)
class Bottleneck:
    name: str
    evidence: str
    advice: str


def _f(row: pd.Series, key: str) -> float:
    try:
        value = float(row.get(key))
    except (TypeError, ValueError):
        return math.nan
    return value


def ceiling_phrase(efficiency: float, ceiling: float) -> str:
    """The workers' share of the ceiling, explained when it is above 100%."""
    if efficiency > 1.0:
        return (
            f"the workers match the single-connection ceiling ({ceiling:,.0f} tasks/s; measured "
            f"{efficiency:.0%} of it: the ceiling, the median of a few runs per job, is noisier than the "
            "workers' median over iterations, so above 100% reads as 'at the ceiling')"
        )
    return f"the workers reach {efficiency:.0%} of the single-connection ceiling ({ceiling:,.0f} tasks/s)"


def _process_saturation(row: pd.Series, t: Thresholds) -> Bottleneck | None:
    """The worker process's CPU is saturated and throughput sits well below the ceiling."""
    efficiency = _f(row, "harness_efficiency_median")
    if not (math.isfinite(efficiency) and efficiency < WELL_BELOW_CEILING):
        return None
    process = str(row.get("executor_kind")) == "process"
    cores = _f(row, PROCESS_CPU) if process else _f(row, "cpu_util_cores_median")
    if not (math.isfinite(cores) and cores >= t.cpu_cores):
        return None
    who = "the busiest worker process" if process else "the worker process"
    evidence = (
        f"{who} kept {cores:.2f} cores busy (a Python process runs on about one) while "
        + ceiling_phrase(efficiency, _f(row, "ceiling_tps_median"))
    )
    advice = "more worker processes (executor=process, more executor.processes)"
    if process:
        advice = "more worker processes (executor.processes) or fewer workers per process"
    return Bottleneck("the worker process", evidence, advice)


def _service_bound(row: pd.Series) -> Bottleneck | None:
    """Workers busy serving tasks: throughput close to workers x 1000 / service_ms."""
    service_ms = _f(row, "service_ms")
    # cpu tasks hold the process (the saturation check covers them); only sleeps overlap
    if str(row.get("service_kind")) != "sleep" or not service_ms > 0:
        return None
    bound = max(int(row["workers"]), 1) * 1000.0 / service_ms
    tps = _f(row, "throughput_tps_median")
    if not tps >= SERVICE_BOUND_SHARE * bound:
        return None
    return Bottleneck(
        "task service time",
        f"{tps:,.0f} tasks/s is {tps / bound:.0%} of what {int(row['workers'])} workers serving "
        f"{service_ms:g} ms tasks can do ({bound:,.0f} tasks/s)",
        "more workers, if the database keeps up (see the busy rate)",
    )


def _from_fit(usl: pd.Series | None) -> Bottleneck | None:
    """Crosstalk or serialization, from a USL fit whose status is ok only."""
    if usl is None or usl.get("usl_status") != "ok":
        return None
    peak = _f(usl, "usl_n_star")
    if math.isfinite(peak) and usl["workers_min"] <= peak < usl["workers_max"]:
        return Bottleneck(
            "crosstalk and retries",
            f"USL coherency kappa={usl['usl_kappa']:.3g} (R² {usl['usl_r_squared']:.2f}): throughput "
            f"peaks at N*={peak:.1f} workers and falls beyond it",
            f"stay at or below {math.floor(peak)} workers",
        )
    if _f(usl, "usl_sigma") > 0.5:
        return Bottleneck(
            "serialization on the write lock",
            f"USL contention sigma={usl['usl_sigma']:.2f} (R² {usl['usl_r_squared']:.2f}): "
            "adding workers adds almost no throughput",
            "fewer workers; batch claims (claim.batch) to do more per lock",
        )
    return None


def _measured_contention(row: pd.Series, tasks: float, t: Thresholds) -> Bottleneck | None:
    workers = max(int(row["workers"]), 1)
    duration = _f(row, "duration_s_median") or math.nan
    retries = _f(row, "retries_median") / tasks if tasks else math.nan
    if retries > t.retries_per_task:
        return Bottleneck(
            "crosstalk and retries",
            f"{retries:.2f} retries per task, busy rate {row['busy_rate_median']:.2%}",
            "fewer workers, or busy.policy=native with a longer busy timeout",
        )
    # Only BEGIN IMMEDIATE times the lock alone; in autocommit and deferred modes the timed
    # statement includes its own execution, so its share is an upper bound, not evidence.
    lock_share = _f(row, "lock_wait_total_s_median") / (duration * workers)
    if row.get("claim_tx") == "immediate" and lock_share > t.lock_wait_share:
        return Bottleneck(
            "serialization on the write lock",
            f"workers spent {lock_share:.0%} of their time waiting for the write lock",
            "fewer workers; batch claims (claim.batch) to do more per lock",
        )
    return None


def _by_ceiling(row: pd.Series, t: Thresholds) -> Bottleneck:
    cores = _f(row, "cpu_util_cores_median")
    if cores >= t.cpu_cores:
        return Bottleneck("CPU saturation", f"the process kept {cores:.2f} cores busy", "a faster CPU")
    efficiency = _f(row, "harness_efficiency_median")
    if not math.isfinite(efficiency):
        return Bottleneck(
            "none identified", "no ceiling was measured (ceiling.enabled=false) to compare against", ""
        )
    phrase = ceiling_phrase(efficiency, _f(row, "ceiling_tps_median"))
    if row["synchronous"] in ("full", "extra") and efficiency >= WELL_BELOW_CEILING:
        return Bottleneck(
            "fsync-bound I/O",
            f"synchronous={row['synchronous']} and {phrase}, which the fsyncs bound",
            "synchronous=normal with journal=wal, if losing the last commits on power loss is acceptable",
        )
    if efficiency < WELL_BELOW_CEILING:
        return Bottleneck(
            "per-statement round trips",
            f"{phrase}: time goes to the driver and the harness, not to SQLite",
            "batch claims (claim.batch) or a thread executor",
        )
    return Bottleneck("none identified", phrase, "")


def bottleneck(row: pd.Series, iterations: pd.DataFrame, usl: pd.Series | None, t: Thresholds) -> Bottleneck:
    """Name what limits the config ``row`` (a summary row), with its figures and the advice."""
    workers = max(int(row["workers"]), 1)
    duration = _f(row, "duration_s_median") or math.nan
    pool_share = _f(row, "pool_wait_total_s_median") / (duration * workers)
    if pool_share > t.pool_wait_share:
        return Bottleneck(
            "pool exhaustion",
            f"workers spent {pool_share:.0%} of their time waiting for one of "
            f"{int(row['pool_connections_median'])} pooled connections",
            "a bigger pool (pool.size) or pool=per_worker",
        )
    tasks = float(iterations["tasks_completed"].median()) if len(iterations) else math.nan
    for found in (
        _process_saturation(row, t),
        _service_bound(row),
        _measured_contention(row, tasks, t),
        _from_fit(usl),
    ):
        if found is not None:
            return found
    return _by_ceiling(row, t)
