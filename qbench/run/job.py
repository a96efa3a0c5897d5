"""One job: per iteration prepare -> drive -> check -> row; then Parquet.

A job is a pure function of its validated config (plus the machine). It
never touches Hydra: the entry point hands it a frozen :class:`Config`. The
workload, the executor and the queue come from their registries
(:mod:`qbench.run.workloads`, :mod:`qbench.run.executors`,
:mod:`qbench.run.queues`), by the kinds the config names.
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
from qbench.kinds import JobState, MetricsLevel, Phase
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
from qbench.run.audit import AuditResult, audit_drain
from qbench.run.ceiling import Ceiling, measure_ceiling
from qbench.run.database import Backlog, DatabaseCheck, check_database, remove_database
from qbench.run.executors import DrainResult, executor_for
from qbench.run.metrics import DrainStats, ResourceMonitor, max_ms, percentiles_ms
from qbench.run.pragmas import connection_settings
from qbench.run.progress import Progress
from qbench.run.queues import make_queue
from qbench.run.sysinfo import collect_sysinfo, network_fs_warning
from qbench.run.workloads import Bench, Workload, workload_for
from qbench.settings import Config, effective_busy_timeout_ms, flatten

log = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass
class JobOutcome:
    ok: bool
    # one line: why the job failed, empty when ok
    reason: str
    metrics_path: Path | None
    # median throughput of the measured iterations (the sweep objective)
    throughput_tps: float | None
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    """What every iteration of one job shares."""

    cfg: Config
    job_num: int
    run_id: str
    host: str
    bench: Bench
    workload: Workload
    # every config value as a column, redacted ones replaced
    config_columns: dict[str, Any]
    progress: Progress


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

    Raises:
        ResultsError: ``metrics.parquet`` is already there (nothing is overwritten).
        ConfigError: the config names a workload, executor or queue kind with no implementation.
    """
    job_dir = Path(job_dir)
    if (job_dir / METRICS_FILE).exists():
        raise ResultsError(f"{job_dir / METRICS_FILE} already exists; qbench never overwrites results")
    db_dir = Path(cfg.db.dir) if cfg.db.dir else job_dir
    sysinfo = collect_sysinfo(db_dir)
    warning = network_fs_warning(sysinfo)
    if warning:
        log.warning("!" * 72 + "\n%s\n" + "!" * 72, warning)
    job = _setup(cfg, db_dir, sysinfo, job_num, redacted or {})
    rows: list[Row] = []
    failure = _run_iterations(job, rows)
    return _finish(job, job_dir, rows, failure, sysinfo, config_yaml)


def _setup(
    cfg: Config, db_dir: Path, sysinfo: Mapping[str, Any], job_num: int, redacted: Mapping[str, str]
) -> _Job:
    run_id = uuid.uuid4().hex
    bench = Bench(
        cfg=cfg,
        db_path=db_dir / f"qbench-{run_id[:12]}.db",
        queue=make_queue(cfg),
        settings=connection_settings(cfg),
        executor=executor_for(cfg),
        payload=os.urandom(cfg.payload_bytes),
    )
    config_columns = flatten(cfg)
    for key, replacement in redacted.items():
        if key in config_columns:
            config_columns[key] = replacement
    return _Job(
        cfg=cfg,
        job_num=job_num,
        run_id=run_id,
        host=str(sysinfo.get("host") or "unknown"),
        bench=bench,
        workload=workload_for(cfg),
        config_columns=config_columns,
        progress=Progress(f"[job {job_num}]"),
    )


def _run_iterations(job: _Job, rows: list[Row]) -> str:
    """The ceiling, then every iteration, appending each row; why the job failed, or ''."""
    cfg = job.cfg
    try:
        ceiling = _ceiling(job)
        for iteration in range(cfg.warmup + cfg.iterations):
            row, failure = _iteration(job, iteration, ceiling)
            rows.append(row)
            if failure:
                return failure
        return ""
    except QbenchError as exc:
        if isinstance(exc, ResultsError):
            raise
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a crash is a failed job, recorded, not a lost sweep
        log.exception("job %d crashed", job.job_num)
        return f"{type(exc).__name__}: {exc}"
    finally:
        job.progress.clear()
        if not cfg.db.keep:
            remove_database(job.bench.db_path)


def _ceiling(job: _Job) -> Ceiling | None:
    cfg, bench = job.cfg, job.bench
    if not cfg.ceiling.enabled:
        return None
    return measure_ceiling(
        bench.db_path,
        bench.queue,
        bench.settings,
        tasks=cfg.ceiling.tasks or cfg.tasks,
        history_rows=cfg.history_rows,
        payload=bench.payload,
        enqueue_batch=cfg.queue.enqueue_batch,
    )


def _iteration(job: _Job, iteration: int, ceiling: Ceiling | None) -> tuple[Row, str]:
    """prepare -> drive -> check -> row; the row, and why the job fails here ('' if it does not)."""
    cfg = job.cfg
    phase = Phase.WARMUP if iteration < cfg.warmup else Phase.MEASURE
    started_at = datetime.now(UTC)
    backlog = job.workload.prepare(job.bench)
    drain = _drive(job, backlog, f"{phase} {iteration + 1}/{cfg.warmup + cfg.iterations}")
    check, audit = _check(job, drain)
    row: Row = {
        "run_id": job.run_id,
        "host": job.host,
        "job_num": job.job_num,
        "iteration": iteration,
        "phase": str(phase),
        "started_at": started_at,
        **job.config_columns,
        **_measure_columns(cfg, drain, backlog),
        **_audit_columns(check, audit),
    }
    if ceiling is not None:
        row.update(_ceiling_columns(ceiling, row["throughput_tps"]))
    if not audit.ok:
        return row, f"audit failed in iteration {iteration} ({phase}): {audit.message}"
    if not check.integrity_ok:
        return row, f"PRAGMA integrity_check failed in iteration {iteration}: {check.integrity_message}"
    return row, ""


def _drive(job: _Job, backlog: Backlog, label: str) -> DrainResult:
    cfg, progress = job.cfg, job.progress
    full = cfg.metrics.level is MetricsLevel.FULL
    monitor = ResourceMonitor(job.bench.db_path, cfg.metrics.sample_interval_ms / 1000.0 if full else None)

    def on_progress(done: int, rate: float) -> None:
        progress.update(f"{label}: {done}/{cfg.tasks} tasks, {rate:,.0f} tasks/s")

    return job.workload.drive(
        job.bench, backlog, on_progress=on_progress if progress.enabled else None, monitor=monitor
    )


def _check(job: _Job, drain: DrainResult) -> tuple[DatabaseCheck, AuditResult]:
    """The database's integrity and row counts, and the audit of the workers' counts against them."""
    bench, stats = job.bench, drain.stats
    check = check_database(bench.db_path, bench.queue, bench.settings)
    audit = audit_drain(
        stats.claims,
        stats.executions,
        stats.acks,
        acks_unknown=stats.acks_unknown,
        double_handed=stats.double_handed,
        queue_states=check.states,
        expected_done_rows=job.cfg.history_rows + job.cfg.tasks,
    )
    return check, audit


def _measure_columns(cfg: Config, drain: DrainResult, backlog: Backlog) -> Row:
    stats, usage, duration = drain.stats, drain.usage, drain.duration_s
    assert usage is not None  # the drive was given a monitor
    completed = sum(1 for a in stats.acks if a)
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
        row.update(_timing_columns(stats))
    return row


def _timing_columns(stats: DrainStats) -> Row:
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


def _audit_columns(check: DatabaseCheck, audit: AuditResult) -> Row:
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


def _ceiling_columns(ceiling: Ceiling, throughput_tps: float | None) -> Row:
    return {
        "ceiling_tps": ceiling.tps,
        "ceiling_enqueue_us": ceiling.enqueue_us,
        "ceiling_claim_us": ceiling.claim_us,
        "ceiling_ack_us": ceiling.ack_us,
        "harness_efficiency": (throughput_tps or 0.0) / ceiling.tps,
    }


def _finish(
    job: _Job, job_dir: Path, rows: list[Row], failure: str, sysinfo: Mapping[str, Any], config_yaml: str
) -> JobOutcome:
    """Write ``metrics.parquet`` (when any row was measured) and ``job_status.json``."""
    measured = [r["throughput_tps"] for r in rows if r["phase"] == Phase.MEASURE and r["throughput_tps"]]
    median_tps = statistics.median(measured) if measured else None
    state = JobState.FAILED if failure else JobState.OK
    metadata = {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_VERSION: __version__,
        META_CONFIG: config_yaml,
        META_SYSINFO: json.dumps(sysinfo, sort_keys=True, default=str),
        META_STATUS: json.dumps({"status": str(state), "reason": failure}),
    }
    written: Path | None = None
    if rows:
        written = job_dir / METRICS_FILE
        write_new_file(written, build_table(rows, job.config_columns, metadata))
    write_status(
        job_dir,
        JobStatus(
            state,
            failure,
            job_num=job.job_num,
            run_id=job.run_id,
            metrics=METRICS_FILE if written else None,
            throughput_tps_median=median_tps,
        ),
    )
    return JobOutcome(not failure, failure, written, median_tps, rows)
