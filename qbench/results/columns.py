"""The column registry of ``metrics.parquet``: every column with its type, unit and doc.

``metrics.parquet`` holds one row per iteration. Columns are, in order: the
identity of the row, every config value flattened (``busy.timeout_ms`` ->
``busy_timeout_ms``), then the measurements below, each with its unit in its
name. Each Arrow field carries its unit, its doc and whether it is a sampled
gauge in its own metadata, so a reader needs no README to know a unit.
Key-value metadata carries the schema version, the resolved config (YAML),
the system info (JSON) and the job status.

Schema history (readers for older versions: :mod:`qbench.results.readers`):
    1: first version.
    2: each field carries ``unit``, ``doc`` and ``sampled`` in its Arrow field metadata;
       columns and values unchanged.
    3: the settings of the load issue (executor_processes, workload_rate/arrivals/duration_s/
       burst_*, service_dist, service_sigma, seed, faults_kill, host_lock) and three optional
       blocks of measurements: the open loop (steady and burst), the worker processes
       (executor=process) and the host lock's window. Older files get the new settings as
       they held before (host_lock=off); the optional blocks stay absent.
    4: lock_wait_p999_ms (the busy timeout recommendation's evidence); the ceiling is the median
       of interleaved repeats (ceiling_repeats, ceiling_tps_spread). Older files get
       lock_wait_p999_ms and ceiling_tps_spread null and ceiling_repeats 1 where a ceiling was
       measured (once per job, before the iterations). The settings queue.target and
       queue.delivery (older files: null and at_least_once, the reference queue's), and the
       queue block: what the queue is and what it ran with, and tasks_lost_expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from qbench.errors import ResultsError
from qbench.results.column import _B, _F, _I, _S, Column
from qbench.results.optional_columns import (
    HOST_LOCK_COLUMNS,
    OPEN_LOOP_COLUMNS,
    PROCESS_COLUMNS,
    QUEUE_COLUMNS,
)

SCHEMA_VERSION = "4"
METRICS_FILE = "metrics.parquet"

META_SCHEMA_VERSION = "qbench.schema_version"
META_CONFIG = "qbench.config"
META_SYSINFO = "qbench.run.sysinfo"
META_STATUS = "qbench.status"
META_VERSION = "qbench.version"


IDENTITY_COLUMNS: tuple[Column, ...] = (
    Column("run_id", _S, "unique id of the job (one Hydra job = one run_id)"),
    Column("host", _S, "host name the job ran on; results of different hosts are never pooled"),
    Column("job_num", _I, "Hydra job number within the sweep (0 for a single run)"),
    Column("iteration", _I, "0-based index over warmup then measured iterations"),
    Column("phase", _S, "`warmup` (excluded from every statistic) or `measure`"),
    Column("started_at", pa.timestamp("us", tz="UTC"), "wall-clock start of the iteration (UTC)"),
)

MEASURE_COLUMNS: tuple[Column, ...] = (
    Column("pool_connections", _I, "connections in the pool (derived from pool.* and workers)"),
    Column("busy_timeout_effective_ms", _I, "PRAGMA busy_timeout actually set (0 for busy.policy=app)"),
    Column("setup_s", _F, "database creation, schema and history rows (not measured work)"),
    Column("enqueue_s", _F, "enqueueing the backlog in batches, timed on its own"),
    Column("duration_s", _F, "drain: from the workers' start to the last task's first ack"),
    Column("tasks_completed", _I, "backlog tasks acknowledged at least once"),
    Column("throughput_tps", _F, "tasks_completed / duration_s"),
    Column("efficiency_tps_per_worker", _F, "throughput_tps / workers"),
    Column("transactions", _I, "claim, ack and requeue transactions attempted (retries included)"),
    Column("retries", _I, "transactions retried after a busy error"),
    Column("busy_total", _I, "busy errors (SQLITE_BUSY/LOCKED family) that reached the application"),
    Column("busy_rate", _F, "busy_total / transactions"),
    Column("busy_phase_begin", _I, "busy errors on BEGIN"),
    Column("busy_phase_claim", _I, "busy errors on the claim statements"),
    Column("busy_phase_ack", _I, "busy errors on the ack statement"),
    Column("busy_phase_commit", _I, "busy errors on COMMIT"),
    Column("busy_code_busy", _I, "busy errors with extended code SQLITE_BUSY (5)"),
    Column(
        "busy_code_busy_snapshot",
        _I,
        "SQLITE_BUSY_SNAPSHOT (517): a deferred transaction's snapshot went stale",
    ),
    Column("busy_code_busy_recovery", _I, "SQLITE_BUSY_RECOVERY (261)"),
    Column("busy_code_busy_timeout", _I, "SQLITE_BUSY_TIMEOUT (773)"),
    Column("busy_code_locked", _I, "SQLITE_LOCKED (6)"),
    Column("busy_code_other", _I, "any other extended code of the two families"),
    Column("claims_empty", _I, "claims that found nothing ready (tail of the drain)"),
    Column("claims_given_up", _I, "claims abandoned after busy.max_retries"),
    Column("acks_rejected", _I, "acks refused because the lease had expired and moved on"),
    Column(
        "acks_given_up",
        _I,
        "tasks whose ack was abandoned after busy.max_retries (redelivered later)",
    ),
    Column(
        "lock_wait_total_s",
        _F,
        "sum of lock waits: duration of the statement that asks for the write lock (BEGIN IMMEDIATE; in autocommit and deferred modes the first writing statement, its execution included)",
    ),
    Column("lock_wait_p99_ms", _F, "99th percentile of those lock waits"),
    Column(
        "lock_wait_p999_ms",
        _F,
        "99.9th percentile of those lock waits: the evidence for the busy timeout recommendation",
    ),
    Column("pool_wait_total_s", _F, "sum of waits for a pool connection"),
    Column("pool_wait_p99_ms", _F, "99th percentile of pool waits"),
    Column("claim_latency_p50_ms", _F, "median claim latency: pool wait, retries and backoff included"),
    Column("claim_latency_p95_ms", _F, "95th percentile claim latency"),
    Column("claim_latency_p99_ms", _F, "99th percentile claim latency"),
    Column(
        "service_latency_p50_ms",
        _F,
        "median task service time (service.kind/service.ms) as executed; null for noop",
    ),
    Column("service_latency_p95_ms", _F, "95th percentile service time"),
    Column("service_latency_p99_ms", _F, "99th percentile service time"),
    Column("service_latency_max_ms", _F, "largest service time"),
    Column(
        "e2e_latency_p50_ms",
        _F,
        "median end-to-end latency: from the moment the task is available to workers (the drain's start, for a backlog; for workload=steady or burst its intended arrival on the schedule, so a stall counts for every task behind it) to its first successful ack",
    ),
    Column("e2e_latency_p95_ms", _F, "95th percentile end-to-end latency"),
    Column("e2e_latency_p99_ms", _F, "99th percentile end-to-end latency"),
    Column("e2e_latency_max_ms", _F, "largest end-to-end latency"),
    Column("cpu_user_s", _F, "user CPU seconds of the qbench process during the drain (all threads)"),
    Column("cpu_sys_s", _F, "system CPU seconds of the qbench process during the drain"),
    Column("cpu_util_cores", _F, "(cpu_user_s + cpu_sys_s) / duration_s: cores kept busy on average"),
    Column("rss_peak_bytes", _I, "largest resident set size seen during the drain", sampled=True),
    Column(
        "io_read_bytes",
        _I,
        "bytes read by the process during the drain (null where the OS refuses)",
    ),
    Column(
        "io_write_bytes",
        _I,
        "bytes written by the process during the drain (null where the OS refuses)",
    ),
    Column("db_size_bytes", _I, "database file size after the drain"),
    Column(
        "wal_size_max_bytes",
        _I,
        "largest -wal file size seen during the drain (null: no WAL)",
        sampled=True,
    ),
    Column("tasks_enqueued", _I, "backlog tasks enqueued"),
    Column("tasks_acked", _I, "backlog tasks acknowledged at least once (workers' side)"),
    Column("tasks_lost", _I, "enqueued and never acknowledged"),
    Column("tasks_duplicated", _I, "executed more than once"),
    Column("tasks_redelivered", _I, "claimed more than once (lease expired)"),
    Column("tasks_acked_twice", _I, "acknowledged successfully twice (must be 0)"),
    Column("acks_unknown", _I, "acknowledged ids that were never enqueued (must be 0)"),
    Column(
        "tasks_double_handed",
        _I,
        "claims that handed a task to a second worker while the first one's lease ran (must be 0)",
    ),
    Column("audit_ok", _B, "the audit passed (nothing lost, acked twice, invented or double-handed)"),
    Column("integrity_ok", _B, "PRAGMA integrity_check returned ok after the drain"),
    Column(
        "ceiling_tps",
        _F,
        "single-connection plain sqlite3 loop, same statements and settings: tasks/s; the median of"
        " the job's ceiling repeats, interleaved with its measured iterations (the same on each row)",
    ),
    Column("ceiling_enqueue_us", _F, "ceiling: microseconds per task enqueued (median of the repeats)"),
    Column("ceiling_claim_us", _F, "ceiling: microseconds per claim transaction (median of the repeats)"),
    Column("ceiling_ack_us", _F, "ceiling: microseconds per ack transaction (median of the repeats)"),
    Column(
        "ceiling_repeats",
        _I,
        "ceiling runs in the job: one after the warmup, one after the last measured iteration, the"
        " rest evenly between (at most 3)",
    ),
    Column(
        "ceiling_tps_spread",
        _F,
        "(largest - smallest) / median of the ceiling repeats' tasks/s (null with one repeat)",
    ),
    Column("harness_efficiency", _F, "throughput_tps / ceiling_tps"),
)


def arrow_type(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return _B
    if isinstance(value, int):
        return _I
    if isinstance(value, float):
        return _F
    return _S


def metrics_schema(config_columns: Mapping[str, Any]) -> pa.Schema:
    """Identity columns, config columns (typed from their values), measurement columns."""
    fields = [c.field() for c in IDENTITY_COLUMNS]
    fields += [
        Column(name, arrow_type(value), f"config value `{name}`").field()
        for name, value in config_columns.items()
    ]
    fields += [c.field() for c in MEASURE_COLUMNS]
    fields += [c.field() for c in OPEN_LOOP_COLUMNS]
    fields += [c.field() for c in HOST_LOCK_COLUMNS]
    fields += [c.field() for c in PROCESS_COLUMNS]
    fields += [c.field() for c in QUEUE_COLUMNS]
    return pa.schema(fields)


def build_table(
    rows: Sequence[Mapping[str, Any]],
    config_columns: Mapping[str, Any],
    metadata: Mapping[str, str],
) -> pa.Table:
    schema = metrics_schema(config_columns)
    names = set(schema.names)
    for row in rows:
        unknown = set(row) - names
        if unknown:
            raise ResultsError(f"row has columns outside the schema: {sorted(unknown)}")
    columns = {f.name: pa.array([row.get(f.name) for row in rows], type=f.type) for f in schema}
    table = pa.table(columns, schema=schema)
    return table.replace_schema_metadata({k.encode(): v.encode() for k, v in metadata.items()})


COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        *IDENTITY_COLUMNS,
        *MEASURE_COLUMNS,
        *OPEN_LOOP_COLUMNS,
        *HOST_LOCK_COLUMNS,
        *PROCESS_COLUMNS,
        *QUEUE_COLUMNS,
    )
}

__all__ = [
    "COLUMNS",
    "HOST_LOCK_COLUMNS",
    "IDENTITY_COLUMNS",
    "MEASURE_COLUMNS",
    "META_CONFIG",
    "META_SCHEMA_VERSION",
    "META_STATUS",
    "META_SYSINFO",
    "META_VERSION",
    "METRICS_FILE",
    "OPEN_LOOP_COLUMNS",
    "PROCESS_COLUMNS",
    "QUEUE_COLUMNS",
    "SCHEMA_VERSION",
    "Column",
    "arrow_type",
    "build_table",
    "metrics_schema",
]
