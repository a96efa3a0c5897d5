"""One iteration's row: its measurements, its audit and its ceiling, as flat columns.

Each column here is declared with its type, unit and doc in
:mod:`qbench.results.columns`; config columns come first (from
:func:`qbench.settings.flatten`), identity columns are the job's.
"""

from __future__ import annotations

from typing import Any

from qbench.kinds import MetricsLevel
from qbench.run.audit import AuditResult
from qbench.run.ceiling import Ceiling
from qbench.run.database import Backlog, DatabaseCheck
from qbench.run.executors import DrainResult
from qbench.run.metrics import DrainStats, max_ms, percentiles_ms
from qbench.settings import Config, effective_busy_timeout_ms

Row = dict[str, Any]


def measure_columns(cfg: Config, drain: DrainResult, backlog: Backlog) -> Row:
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
        row.update(timing_columns(stats))
    return row


def timing_columns(stats: DrainStats) -> Row:
    """Waits and latencies: only with metrics.level=full (null otherwise)."""
    row: Row = {
        "lock_wait_total_s": sum(stats.lock_wait_s),
        "lock_wait_p99_ms": percentiles_ms(stats.lock_wait_s, [99])[0],
        "pool_wait_total_s": sum(stats.pool_wait_s),
        "pool_wait_p99_ms": percentiles_ms(stats.pool_wait_s, [99])[0],
    }
    for name, values in (
        ("claim_latency", stats.claim_latency_s),
        ("service_latency", stats.service_s),
        ("e2e_latency", stats.e2e_s),
    ):
        p50, p95, p99 = percentiles_ms(values, [50, 95, 99])
        row.update({f"{name}_p50_ms": p50, f"{name}_p95_ms": p95, f"{name}_p99_ms": p99})
    row["service_latency_max_ms"] = max_ms(stats.service_s)
    row["e2e_latency_max_ms"] = max_ms(stats.e2e_s)
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
        "audit_ok": audit.ok,
        "integrity_ok": check.integrity_ok,
    }


def ceiling_columns(ceiling: Ceiling, throughput_tps: float | None) -> Row:
    return {
        "ceiling_tps": ceiling.tps,
        "ceiling_enqueue_us": ceiling.enqueue_us,
        "ceiling_claim_us": ceiling.claim_us,
        "ceiling_ack_us": ceiling.ack_us,
        "harness_efficiency": (throughput_tps or 0.0) / ceiling.tps,
    }
