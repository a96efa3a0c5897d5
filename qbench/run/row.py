"""One iteration's row: its measurements, its audit and its ceiling, as flat columns.

Each column here is declared with its type, unit and doc in
:mod:`qbench.results.columns`; config columns come first (from
:func:`qbench.settings.flatten`), identity columns are the job's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbench.kinds import MetricsLevel
from qbench.run.audit import AuditResult
from qbench.run.ceiling import CeilingRepeats
from qbench.run.database import Backlog, DatabaseCheck
from qbench.run.executors import DrainResult
from qbench.run.metrics import DrainStats, Seconds, max_ms, percentiles_ms
from qbench.run.pragmas import ConnectionSettings
from qbench.run.queues.client import SYNCHRONOUS_LEVEL
from qbench.run.workloads.open_loop import (
    LATE_THRESHOLD_S,
    OpenLoop,
    achieved_rate,
    burst_drains,
    depth_quantile,
    queue_depth,
)
from qbench.settings import Config, effective_busy_timeout_ms, worker_processes

Row = dict[str, Any]


def measure_columns(
    cfg: Config, drain: DrainResult, backlog: Backlog, open_loop: OpenLoop | None = None
) -> Row:
    stats, usage, duration = drain.stats, drain.usage, drain.duration_s
    assert usage is not None  # the drive was given a monitor
    completed = stats.tasks_acked
    tps = completed / duration if duration > 0 else None
    row: Row = {
        "pool_connections": drain.pool_connections,
        "busy_timeout_effective_ms": effective_busy_timeout_ms(cfg),
        "setup_s": backlog.setup_s,
        "enqueue_s": backlog.enqueue_s,
        "duration_s": duration,
        "tasks_completed": completed,
        "throughput_tps": tps,
        "efficiency_tps_per_worker": tps / cfg.workers if tps is not None else None,
        "transactions": stats.transactions,
        "retries": stats.retries,
        "busy_total": stats.busy_total,
        "busy_rate": stats.busy_total / stats.transactions if stats.transactions else 0.0,
        "claims_empty": stats.claims_empty,
        "claims_given_up": stats.claims_given_up,
        "acks_rejected": stats.acks_rejected,
        "acks_given_up": stats.acks_given_up,
        "cpu_user_s": usage.cpu_user_s,
        "cpu_sys_s": usage.cpu_sys_s,
        "cpu_util_cores": (usage.cpu_user_s + usage.cpu_sys_s) / duration if duration > 0 else None,
        "rss_peak_bytes": usage.rss_peak_bytes,
        "io_read_bytes": usage.io_read_bytes,
        "io_write_bytes": usage.io_write_bytes,
        "wal_size_max_bytes": usage.wal_size_max_bytes,
    }
    row.update({f"busy_phase_{phase}": n for phase, n in stats.busy_by_phase.items()})
    row.update({f"busy_code_{code}": n for code, n in stats.busy_by_code.items()})
    if cfg.metrics.level is MetricsLevel.FULL:
        # open loop: end to end from each task's intended arrival, not from the clock's start
        row.update(timing_columns(stats, open_loop.e2e_s if open_loop is not None else None))
    if open_loop is not None:
        row.update(open_loop_columns(open_loop))
    row.update(process_columns(cfg, drain))
    return row


def process_columns(cfg: Config, drain: DrainResult) -> Row:
    """The worker processes of executor=process, each by itself (null for the other executors)."""
    row: Row = {"processes": worker_processes(cfg), "faults_injected": drain.faults_injected}
    if not drain.processes:
        return row
    cpu = [p.cpu_user_s + p.cpu_sys_s for p in drain.processes]
    rss = [p.rss_peak_bytes for p in drain.processes]
    duration = drain.duration_s
    row.update(
        {
            "process_cpu_util_max_cores": max(cpu) / duration if duration > 0 else None,
            "process_cpu_total_s": sum(cpu),
            "process_rss_peak_max_bytes": max(rss),
            "process_cpu_s": cpu,
            "process_rss_peak_bytes": rss,
        }
    )
    return row


def timing_columns(stats: DrainStats, e2e_s: Seconds | None = None) -> Row:
    """Waits and latencies: only with metrics.level=full (null otherwise)."""
    lock_p99, lock_p999 = percentiles_ms(stats.lock_wait_s, [99, 99.9])
    row: Row = {
        "lock_wait_total_s": sum(stats.lock_wait_s),
        "lock_wait_p99_ms": lock_p99,
        # the busy timeout recommendation's evidence (qbench.analysis.busy)
        "lock_wait_p999_ms": lock_p999,
        "pool_wait_total_s": sum(stats.pool_wait_s),
        "pool_wait_p99_ms": percentiles_ms(stats.pool_wait_s, [99])[0],
    }
    for name, values in (
        ("claim_latency", stats.claim_latency_s),
        ("service_latency", stats.service_s),
        ("e2e_latency", stats.e2e_s if e2e_s is None else e2e_s),
    ):
        p50, p95, p99 = percentiles_ms(values, [50, 95, 99])
        row.update({f"{name}_p50_ms": p50, f"{name}_p95_ms": p95, f"{name}_p99_ms": p99})
    row["service_latency_max_ms"] = max_ms(stats.service_s)
    row["e2e_latency_max_ms"] = max_ms(stats.e2e_s if e2e_s is None else e2e_s)
    return row


def open_loop_columns(loop: OpenLoop) -> Row:
    """Arrivals, producer lag, queue depth, waits and burst drains of a steady or burst iteration."""
    lag = loop.lag_s
    times, depth = queue_depth(loop.enqueued_s, loop.acked_s)
    row: Row = {
        "offered_rate_tps": loop.offered_rate_tps,
        "arrivals": int(loop.intended_s.size),
        "achieved_rate_tps": achieved_rate(loop),
        "producer_lag_p99_ms": percentiles_ms(lag, [99])[0],
        "producer_lag_max_ms": max_ms(lag),
        "arrivals_late": int(np.count_nonzero(~(lag <= LATE_THRESHOLD_S))),
        "producer_busy_retries": loop.producer_busy_retries,
        "queue_depth_max": int(depth.max()) if depth.size else 0,
        "queue_depth_p99": depth_quantile(times, depth),
    }
    p50, p95, p99 = percentiles_ms(loop.wait_s, [50, 95, 99])
    row.update({"wait_p50_ms": p50, "wait_p95_ms": p95, "wait_p99_ms": p99})
    if loop.bursts:
        drains = np.asarray(burst_drains(loop, times, depth))
        worst, median = float(drains.max()), float(np.median(drains))
        row["burst_drain_max_s"] = worst if np.isfinite(worst) else None
        row["burst_drain_p50_s"] = median if np.isfinite(median) else None
    return row


def audit_columns(check: DatabaseCheck, audit: AuditResult) -> Row:
    return {
        "db_size_bytes": check.db_size_bytes,
        "tasks_enqueued": audit.tasks_enqueued,
        "tasks_acked": audit.tasks_acked,
        "tasks_lost": audit.tasks_lost,
        "tasks_duplicated": audit.tasks_duplicated,
        "tasks_redelivered": audit.tasks_redelivered,
        "tasks_acked_twice": audit.tasks_acked_twice,
        "acks_unknown": audit.acks_unknown,
        "tasks_double_handed": audit.tasks_double_handed,
        "tasks_lost_expected": audit.tasks_lost_expected,
        "audit_ok": audit.ok,
        "integrity_ok": check.integrity_ok,
    }


def queue_columns(library: str, settings: ConnectionSettings, check: DatabaseCheck) -> Row:
    """What the queue is and what it ran with: a client-level queue's own read-back, or the
    PRAGMAs qbench set and read back on every connection of its statement-level queue."""
    in_effect = check.in_effect
    journal: object
    synchronous: object
    busy: object
    if in_effect is None:  # statement level: configure() read every PRAGMA back
        level = "statement"
        journal, synchronous, busy = (
            str(settings.journal_mode),
            SYNCHRONOUS_LEVEL.get(str(settings.synchronous)),
            settings.busy_timeout_ms,
        )
    else:
        level = "client"
        journal = in_effect.get("journal_mode")
        synchronous, busy = in_effect.get("synchronous"), in_effect.get("busy_timeout_ms")
    return {
        "queue_level": level,
        "queue_library": library,
        "queue_journal_mode_in_effect": None if journal is None else str(journal).lower(),
        "queue_synchronous_in_effect": None if synchronous is None else int(str(synchronous)),
        "queue_busy_timeout_ms_in_effect": None if busy is None else int(str(busy)),
    }


def ceiling_columns(repeats: CeilingRepeats, throughput_tps: float | None) -> Row:
    """The job's ceiling (the median of its repeats so far) and their spread; {} before the first."""
    ceiling = repeats.median()
    if ceiling is None:
        return {}
    return {
        "ceiling_tps": ceiling.tps,
        "ceiling_enqueue_us": ceiling.enqueue_us,
        "ceiling_claim_us": ceiling.claim_us,
        "ceiling_ack_us": ceiling.ack_us,
        "ceiling_repeats": len(repeats.done),
        "ceiling_tps_spread": repeats.spread(),
        "harness_efficiency": (throughput_tps or 0.0) / ceiling.tps,
    }
