"""One job: per iteration prepare -> drive -> check -> row; then Parquet.

A job is a pure function of its validated config (plus the machine). It
never touches Hydra: the entry point hands it a frozen :class:`Config`. The
workload, the executor and the queue come from their registries
(:mod:`qbench.run.workloads`, :mod:`qbench.run.executors`,
:mod:`qbench.run.queues`), by the kinds the config names.

Every end a job can have is recorded in its directory: ``ok`` or ``failed``
(the reason in one line; a livelock or an iteration timeout is a finding
about the config, not a crash), or ``interrupted`` (Ctrl-C: the status and
the rows measured so far are written, the database removed, then the
``KeyboardInterrupt`` goes on). Its database files never outlive it, and
those a ``kill -9`` left are removed by the next job (:mod:`qbench.run.leftovers`).
How the results and the status are written: :mod:`qbench.run.outcome`; the
row's columns: :mod:`qbench.run.row`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qbench.errors import QbenchError, ResultsError
from qbench.kinds import Delivery, MetricsLevel, Phase
from qbench.results.columns import METRICS_FILE
from qbench.run.audit import AuditResult, audit_drain
from qbench.run.ceiling import CeilingRepeats, measure_ceiling, repeat_positions
from qbench.run.database import Backlog, DatabaseCheck, check_client_database, check_database
from qbench.run.executors import DrainResult, executor_for
from qbench.run.hostlock import Holder, MeasuredWindow, hold_host
from qbench.run.leftovers import claim_database, database_name, release_database, remove_leftovers
from qbench.run.metrics import ResourceMonitor
from qbench.run.outcome import JobOutcome, JobRecord, finish, record_interrupt
from qbench.run.pragmas import connection_settings
from qbench.run.progress import Progress
from qbench.run.queues.loading import check_queue, statement_queue
from qbench.run.row import Row, audit_columns, ceiling_columns, measure_columns, queue_columns
from qbench.run.sysinfo import collect_sysinfo, network_fs_warning
from qbench.run.workloads import Bench, Driven, Workload, workload_for
from qbench.settings import Config, flatten

log = logging.getLogger(__name__)

__all__ = ["JobOutcome", "run_job"]


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
    # who this job is, for the host lock's file (run dir hidden when it comes from the environment)
    holder: Holder


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
        The outcome; a failed audit or a failed iteration (a timeout, a livelock) gives
        ``ok=False`` with the reason, and the rows measured so far are still written.

    Raises:
        ResultsError: ``metrics.parquet`` is already there (nothing is overwritten), or the
            results could not be written (the OS's error in the message; ``job_status.json``
            records the failure when it still can be written).
        ConfigError: the config names a workload, executor or queue kind with no implementation.
        KeyboardInterrupt: re-raised once ``job_status.json`` says ``interrupted``, the rows
            measured so far are written and the database is removed.
    """
    job_dir = Path(job_dir)
    if (job_dir / METRICS_FILE).exists():
        raise ResultsError(f"{job_dir / METRICS_FILE} already exists; qbench never overwrites results")
    db_dir = Path(cfg.db.dir) if cfg.db.dir else job_dir
    out = JobRecord(job_dir, job_num, uuid.uuid4().hex, config_yaml, datetime.now(UTC), time.perf_counter())
    rows: list[Row] = []
    try:
        remove_leftovers(db_dir, own=db_dir.resolve() == job_dir.resolve())
        if db_dir.resolve() != job_dir.resolve():
            remove_leftovers(job_dir, own=True)
        out.sysinfo = collect_sysinfo(db_dir)
        if redacted and "db_dir" in redacted:  # a directory taken from the environment is not recorded
            out.sysinfo["db_dir"] = redacted["db_dir"]
        warning = network_fs_warning(out.sysinfo)
        if warning:
            log.warning("!" * 72 + "\n%s\n" + "!" * 72, warning)
        job = _setup(cfg, db_dir, out, redacted or {})
        failure = _run_iterations(job, rows)
    except KeyboardInterrupt as exc:
        record_interrupt(out, rows, exc)
        raise
    return finish(out, rows, failure)


def _setup(cfg: Config, db_dir: Path, out: JobRecord, redacted: Mapping[str, str]) -> _Job:
    assert out.sysinfo is not None
    resolved = check_queue(cfg)
    bench = Bench(
        cfg=cfg,
        db_path=db_dir / database_name(out.run_id),
        queue=statement_queue(cfg, resolved),
        settings=connection_settings(cfg),
        executor=executor_for(cfg),
        payload=os.urandom(cfg.payload_bytes),
        client=resolved.client,
        library=resolved.library,
    )
    config_columns = flatten(cfg)
    for key, replacement in redacted.items():
        if key in config_columns:
            config_columns[key] = replacement
    out.config_columns = config_columns
    return _Job(
        cfg=cfg,
        job_num=out.job_num,
        run_id=out.run_id,
        host=str(out.sysinfo.get("host") or "unknown"),
        bench=bench,
        workload=workload_for(cfg),
        config_columns=config_columns,
        progress=Progress(f"[job {out.job_num}]"),
        holder=Holder(out.job_num, redacted.get("db_dir") or str(out.job_dir)),
    )


def _run_iterations(job: _Job, rows: list[Row]) -> str:
    """The ceiling, then every iteration, appending each row; why the job failed, or ''.

    The database is removed (or, with ``db.keep``, kept and marked so) however this ends.
    """
    cfg = job.cfg
    window = MeasuredWindow()
    ceiling = _ceiling(job)
    try:
        claim_database(job.bench.db_path)
        with hold_host(cfg.host_lock, job.holder, window, lambda text: _waiting(job, text)):
            for iteration in range(cfg.warmup + cfg.iterations):
                if ceiling is not None:
                    ceiling.before(iteration)
                row, failure = _iteration(job, iteration)
                rows.append(row)
                if failure:
                    return failure
            if ceiling is not None:
                ceiling.before(cfg.warmup + cfg.iterations)
        return ""
    except QbenchError as exc:
        if isinstance(exc, ResultsError):
            raise
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a crash is a failed job, recorded, not a lost sweep
        log.exception("job %d crashed", job.job_num)
        return f"{type(exc).__name__}: {exc}"
    finally:
        for done in rows:  # the job's measured window and its wait for the host, on each of its rows
            done.update(window.columns())
            if ceiling is not None:  # the median of the ceiling repeats measured, on each row
                done.update(ceiling_columns(ceiling, done["throughput_tps"]))
        job.progress.clear()
        release_database(job.bench.db_path, keep=cfg.db.keep)


def _waiting(job: _Job, text: str) -> None:
    log.info("job %d: %s", job.job_num, text)
    job.progress.update(text)


def _ceiling(job: _Job) -> CeilingRepeats | None:
    """The job's ceiling repeats, measured interleaved with its iterations (none measured yet)."""
    cfg, bench = job.cfg, job.bench
    if not cfg.ceiling.enabled:
        return None
    return CeilingRepeats(
        lambda: measure_ceiling(
            bench.db_path,
            bench.queue,
            bench.settings,
            tasks=cfg.ceiling.tasks or cfg.tasks,
            history_rows=cfg.history_rows,
            payload=bench.payload,
            enqueue_batch=cfg.queue.enqueue_batch,
        ),
        repeat_positions(cfg.warmup, cfg.iterations, after_last=not cfg.db.keep),
    )


def _iteration(job: _Job, iteration: int) -> tuple[Row, str]:
    """prepare -> drive -> check -> row; the row, and why the job fails here ('' if it does not)."""
    cfg = job.cfg
    phase = Phase.WARMUP if iteration < cfg.warmup else Phase.MEASURE
    started_at = datetime.now(UTC)
    backlog = job.workload.prepare(job.bench)
    driven = _drive(job, backlog, f"{phase} {iteration + 1}/{cfg.warmup + cfg.iterations}")
    drain = driven.drain
    check, audit = _check(job, drain, backlog)
    row: Row = {
        "run_id": job.run_id,
        "host": job.host,
        "job_num": job.job_num,
        "iteration": iteration,
        "phase": str(phase),
        "started_at": started_at,
        **job.config_columns,
        **measure_columns(cfg, drain, backlog, driven.open_loop),
        **audit_columns(check, audit),
        **queue_columns(job.bench.library, job.bench.settings, check),
    }
    if not audit.ok:
        return row, f"audit failed in iteration {iteration} ({phase}): {audit.message}"
    if not check.integrity_ok:
        return row, f"PRAGMA integrity_check failed in iteration {iteration}: {check.integrity_message}"
    return row, ""


def _drive(job: _Job, backlog: Backlog, label: str) -> Driven:
    cfg, progress = job.cfg, job.progress
    full = cfg.metrics.level is MetricsLevel.FULL
    monitor = ResourceMonitor(job.bench.db_path, cfg.metrics.sample_interval_ms / 1000.0 if full else None)

    def on_progress(done: int, rate: float) -> None:
        # backlog.tasks: cfg.tasks for drain, the schedule's arrivals for steady and burst
        progress.update(f"{label}: {done}/{backlog.tasks} tasks, {rate:,.0f} tasks/s")

    return job.workload.drive(
        job.bench, backlog, on_progress=on_progress if progress.enabled else None, monitor=monitor
    )


def _check(job: _Job, drain: DrainResult, backlog: Backlog) -> tuple[DatabaseCheck, AuditResult]:
    """The database's integrity and row counts, and the audit of the workers' counts against them."""
    bench, stats = job.bench, drain.stats
    if bench.client is not None:
        check = check_client_database(bench.db_path, bench.client)
    else:
        check = check_database(bench.db_path, bench.queue, bench.settings)
    audit = audit_drain(
        stats.claims,
        stats.executions,
        stats.acks,
        acks_unknown=stats.acks_unknown,
        double_handed=stats.double_handed,
        queue_states=None if bench.client is not None else check.states,
        expected_done_rows=job.cfg.history_rows + backlog.tasks,
        loss_allowed=job.cfg.queue.delivery is Delivery.AT_MOST_ONCE and drain.faults_injected > 0,
        client_leftover=check.client_leftover,
        duplicates_allowed=bench.client is not None,
    )
    return check, audit
