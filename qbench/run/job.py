"""One job: per iteration a fresh database, the backlog, the drain, the audit; then Parquet.

A job is a pure function of its validated config (plus the machine). It
never touches Hydra: the entry point hands it a frozen :class:`Config`.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qbench import __version__
from qbench.errors import QbenchError, ResultsError
from qbench.kinds import (
    BusyPolicy,
    JobState,
    JournalMode,
    MetricsLevel,
    Phase,
    ServiceKind,
    Synchronous,
    TxMode,
)
from qbench.results.columns import (
    META_CONFIG,
    META_SCHEMA_VERSION,
    META_STATUS,
    META_SYSINFO,
    META_VERSION,
    METRICS_FILE,
    SCHEMA_VERSION,
    build_table,
)
from qbench.results.status import JobStatus, write_status
from qbench.results.writer import write_new_file
from qbench.run.audit import audit_drain
from qbench.run.ceiling import Ceiling, measure_ceiling
from qbench.run.database import check_database, prepare_database, remove_database
from qbench.run.executors import DrainResult, DrainSpec, run_drain
from qbench.run.metrics import ResourceMonitor, ResourceUsage, max_ms, percentiles_ms
from qbench.run.pragmas import ConnectionSettings
from qbench.run.progress import Progress
from qbench.run.queues import SqliteQueue
from qbench.run.sysinfo import collect_sysinfo, network_fs_warning
from qbench.settings import Config, effective_busy_timeout_ms, flatten, pool_connections

log = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    ok: bool
    # one line: why the job failed, empty when ok
    reason: str
    metrics_path: Path | None
    # median throughput of the measured iterations (the sweep objective)
    throughput_tps: float | None
    rows: list[dict[str, Any]] = field(default_factory=list)


def connection_settings(cfg: Config) -> ConnectionSettings:
    return ConnectionSettings(
        journal_mode=JournalMode(cfg.journal.mode),
        synchronous=Synchronous(cfg.synchronous),
        busy_timeout_ms=effective_busy_timeout_ms(cfg),
        wal_autocheckpoint_pages=cfg.journal.wal_autocheckpoint_pages,
    )


def make_queue(cfg: Config) -> SqliteQueue:
    return SqliteQueue(TxMode(cfg.claim.tx), cfg.claim.batch, cfg.queue.lease_s)


def drain_spec(cfg: Config, db_path: Path, first_id: int) -> DrainSpec:
    return DrainSpec(
        db_path=db_path,
        settings=connection_settings(cfg),
        workers=cfg.workers,
        pool_size=pool_connections(cfg),
        first_id=first_id,
        tasks=cfg.tasks,
        busy_policy=BusyPolicy(cfg.busy.policy),
        max_retries=cfg.busy.max_retries,
        backoff_base_s=cfg.busy.backoff_base_ms / 1000.0,
        backoff_cap_s=cfg.busy.backoff_cap_ms / 1000.0,
        service_kind=ServiceKind(cfg.service.kind),
        service_s=cfg.service.ms / 1000.0,
        poll_interval_s=cfg.queue.poll_interval_ms / 1000.0,
        lease_s=cfg.queue.lease_s,
        timeout_s=cfg.iteration_timeout_s,
        timings=MetricsLevel(cfg.metrics.level) is MetricsLevel.FULL,
    )


def _measure_row(
    cfg: Config, drain: DrainResult, usage: ResourceUsage, enqueue_s: float, setup_s: float
) -> dict[str, Any]:
    stats = drain.stats
    completed = sum(1 for a in stats.acks if a)
    duration = drain.duration_s
    tps = completed / duration if duration > 0 else None
    timings = MetricsLevel(cfg.metrics.level) is MetricsLevel.FULL
    row: dict[str, Any] = {
        "pool_connections": drain.pool_connections,
        "busy_timeout_effective_ms": effective_busy_timeout_ms(cfg),
        "setup_s": setup_s,
        "enqueue_s": enqueue_s,
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
    if timings:
        row["lock_wait_total_s"] = sum(stats.lock_wait_s)
        row["lock_wait_p99_ms"] = percentiles_ms(stats.lock_wait_s, [99])[0]
        row["pool_wait_total_s"] = sum(stats.pool_wait_s)
        row["pool_wait_p99_ms"] = percentiles_ms(stats.pool_wait_s, [99])[0]
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


def run_job(
    cfg: Config,
    job_dir: Path,
    *,
    job_num: int = 0,
    config_yaml: str = "",
    redacted: Mapping[str, str] | None = None,
) -> JobOutcome:
    """Run warmup and measured iterations, audit each, and write ``metrics.parquet``.

    Args:
        cfg: a validated config.
        job_dir: the job's own directory (Hydra's output dir); must exist.
        job_num: the job's number within its sweep.
        config_yaml: the resolved config, stored in the Parquet metadata.
        redacted: config columns whose values must not be copied into results.

    Returns:
        The outcome; a failed audit or a failed iteration gives ``ok=False`` with
        the reason, and the rows measured so far are still written.
    """
    job_dir = Path(job_dir)
    metrics_path = job_dir / METRICS_FILE
    if metrics_path.exists():
        raise ResultsError(f"{metrics_path} already exists; qbench never overwrites results")
    db_dir = Path(cfg.db.dir) if cfg.db.dir else job_dir
    run_id = uuid.uuid4().hex
    db_path = db_dir / f"qbench-{run_id[:12]}.db"
    sysinfo = collect_sysinfo(db_dir)
    warning = network_fs_warning(sysinfo)
    if warning:
        log.warning("!" * 72 + "\n%s\n" + "!" * 72, warning)

    queue = make_queue(cfg)
    settings = connection_settings(cfg)
    payload = os.urandom(cfg.payload_bytes)
    config_columns = flatten(cfg)
    for key, replacement in (redacted or {}).items():
        if key in config_columns:
            config_columns[key] = replacement
    host = str(sysinfo.get("host") or "unknown")
    progress = Progress(f"[job {job_num}]")
    rows: list[dict[str, Any]] = []
    failure = ""
    total = cfg.warmup + cfg.iterations
    try:
        ceiling: Ceiling | None = None
        if cfg.ceiling.enabled:
            ceiling = measure_ceiling(
                db_path,
                queue,
                settings,
                tasks=cfg.ceiling.tasks or cfg.tasks,
                history_rows=cfg.history_rows,
                payload=payload,
                enqueue_batch=cfg.queue.enqueue_batch,
            )
        for iteration in range(total):
            phase = Phase.WARMUP if iteration < cfg.warmup else Phase.MEASURE
            label = f"{phase} {iteration + 1}/{total}"
            started_at = datetime.now(UTC)
            backlog = prepare_database(
                db_path,
                queue,
                settings,
                history_rows=cfg.history_rows,
                tasks=cfg.tasks,
                payload=payload,
                enqueue_batch=cfg.queue.enqueue_batch,
            )
            level = MetricsLevel(cfg.metrics.level)
            monitor = ResourceMonitor(
                db_path,
                cfg.metrics.sample_interval_ms / 1000.0 if level is MetricsLevel.FULL else None,
            )
            on_progress = None
            if progress.enabled:

                def on_progress(done: int, rate: float, label: str = label) -> None:
                    progress.update(f"{label}: {done}/{cfg.tasks} tasks, {rate:,.0f} tasks/s")

            drain = run_drain(
                drain_spec(cfg, db_path, backlog.first_id), queue, on_progress=on_progress, monitor=monitor
            )
            usage = drain.usage
            assert usage is not None  # run_drain was given a monitor
            check = check_database(db_path, queue, settings)
            stats = drain.stats
            audit = audit_drain(
                stats.claims,
                stats.executions,
                stats.acks,
                acks_unknown=stats.acks_unknown,
                double_handed=stats.double_handed,
                queue_states=check.states,
                expected_done_rows=cfg.history_rows + cfg.tasks,
            )
            row: dict[str, Any] = {
                "run_id": run_id,
                "host": host,
                "job_num": job_num,
                "iteration": iteration,
                "phase": str(phase),
                "started_at": started_at,
                **config_columns,
                **_measure_row(cfg, drain, usage, backlog.enqueue_s, backlog.setup_s),
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
            if ceiling is not None:
                row.update(
                    ceiling_tps=ceiling.tps,
                    ceiling_enqueue_us=ceiling.enqueue_us,
                    ceiling_claim_us=ceiling.claim_us,
                    ceiling_ack_us=ceiling.ack_us,
                    harness_efficiency=(row["throughput_tps"] or 0.0) / ceiling.tps,
                )
            rows.append(row)
            if not audit.ok:
                failure = f"audit failed in iteration {iteration} ({phase}): {audit.message}"
                break
            if not check.integrity_ok:
                failure = f"PRAGMA integrity_check failed in iteration {iteration}: {check.integrity_message}"
                break
    except QbenchError as exc:
        if isinstance(exc, ResultsError):
            raise
        failure = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a crash is a failed job, recorded, not a lost sweep
        log.exception("job %d crashed", job_num)
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        progress.clear()
        if not cfg.db.keep:
            remove_database(db_path)

    measured = [r["throughput_tps"] for r in rows if r["phase"] == Phase.MEASURE and r["throughput_tps"]]
    median_tps = statistics.median(measured) if measured else None
    state = JobState.FAILED if failure else JobState.OK
    status = {"status": str(state), "reason": failure}
    metadata = {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_VERSION: __version__,
        META_CONFIG: config_yaml,
        META_SYSINFO: json.dumps(sysinfo, sort_keys=True, default=str),
        META_STATUS: json.dumps(status),
    }
    written: Path | None = None
    if rows:
        write_new_file(metrics_path, build_table(rows, config_columns, metadata))
        written = metrics_path
    write_status(
        job_dir,
        JobStatus(
            state,
            failure,
            job_num=job_num,
            run_id=run_id,
            metrics=METRICS_FILE if written else None,
            throughput_tps_median=median_tps,
        ),
    )
    return JobOutcome(not failure, failure, written, median_tps, rows)
