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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from qbench.errors import ResultsError

SCHEMA_VERSION = "3"
METRICS_FILE = "metrics.parquet"

META_SCHEMA_VERSION = "qbench.schema_version"
META_CONFIG = "qbench.config"
META_SYSINFO = "qbench.run.sysinfo"
META_STATUS = "qbench.status"
META_VERSION = "qbench.version"


# Units, read from a column's name suffix (DESIGN: units in names).
_UNITS = (
    ("_tps_per_worker", "tasks/s per worker"),
    ("_tps", "tasks/s"),
    ("_bytes", "bytes"),
    ("_ms", "ms"),
    ("_us", "us"),
    ("_cores", "cores"),
    ("_s", "s"),
)
COUNT_UNIT = "count"


def unit_of(name: str) -> str:
    """The unit a column's name declares ('' for identities, flags and plain labels)."""
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return ""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    # a sampled gauge rather than an exact count or timing
    sampled: bool = False

    @property
    def unit(self) -> str:
        declared = unit_of(self.name)
        return declared or (COUNT_UNIT if pa.types.is_integer(self.type) else "")

    def field(self) -> pa.Field:
        """The Arrow field, its unit, doc and sampling written into its metadata."""
        meta = {"unit": self.unit, "doc": self.doc, "sampled": "true" if self.sampled else "false"}
        return pa.field(self.name, self.type, metadata=meta)


_I, _F, _S, _B = pa.int64(), pa.float64(), pa.string(), pa.bool_()

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
        "single-connection plain sqlite3 loop, same statements and settings: tasks/s",
    ),
    Column("ceiling_enqueue_us", _F, "ceiling: microseconds per task enqueued"),
    Column("ceiling_claim_us", _F, "ceiling: microseconds per claim transaction"),
    Column("ceiling_ack_us", _F, "ceiling: microseconds per ack transaction"),
    Column("harness_efficiency", _F, "throughput_tps / ceiling_tps"),
)

# The host guard (run/hostlock.py): the job's measured window, the same on each of its rows.
# Not required of a file: results written before the guard existed still load.
HOST_LOCK_COLUMNS: tuple[Column, ...] = (
    Column(
        "host_lock_wait_s",
        _F,
        "seconds the job waited for another job's measured work on its host to end (null: host_lock=off)",
    ),
    Column(
        "measured_start_at",
        pa.timestamp("us", tz="UTC"),
        "wall-clock start of the job's measured work: ceiling, warmup and iterations (UTC)",
    ),
    Column(
        "measured_end_at", pa.timestamp("us", tz="UTC"), "wall-clock end of the job's measured work (UTC)"
    ),
)

# Open-loop workloads (workload=steady|burst; null for drain). Times count from each task's
# intended arrival on the schedule; the producer is the process that enqueues on schedule.
# Not required of a file: results written before these columns existed still load.
OPEN_LOOP_COLUMNS: tuple[Column, ...] = (
    Column(
        "offered_rate_tps",
        _F,
        "the rate the arrival schedule is drawn at, averaged over workload.duration_s:"
        " workload.rate for steady; for burst the mean of rate and burst_rate over the window",
    ),
    Column("arrivals", _I, "tasks on the iteration's arrival schedule (= tasks_enqueued)"),
    Column(
        "achieved_rate_tps",
        _F,
        "arrivals enqueued / the producer's window (from the clock's start to the later of"
        " workload.duration_s and its last enqueue's commit): arrivals / duration_s when it kept up,"
        " lower when it fell behind; poisson arrivals scatter around offered_rate_tps by"
        " sqrt(arrivals) / duration_s",
    ),
    Column("producer_lag_p99_ms", _F, "99th percentile of (enqueue commit - intended arrival) per task"),
    Column("producer_lag_max_ms", _F, "largest (enqueue commit - intended arrival)"),
    Column(
        "arrivals_late",
        _I,
        "arrivals enqueued more than 10 ms after their intended time (the producer fell behind)",
    ),
    Column("producer_busy_retries", _I, "busy errors the producer's enqueues met and retried"),
    Column(
        "queue_depth_max",
        _I,
        "largest queue depth (tasks enqueued - tasks acknowledged), exact from the per-task"
        " enqueue and first-ack times",
    ),
    Column(
        "queue_depth_p99",
        _I,
        "queue depth not exceeded for 99% of the time from the clock's start to the last ack"
        " (time-weighted, exact)",
    ),
    Column("wait_p50_ms", _F, "median wait: intended arrival to first claim"),
    Column("wait_p95_ms", _F, "95th percentile wait (intended arrival to first claim)"),
    Column("wait_p99_ms", _F, "99th percentile wait (intended arrival to first claim)"),
    Column(
        "burst_drain_max_s",
        _F,
        "burst only: largest time from a burst's end until the queue depth is back to at most"
        " its depth at the burst's start (null: a burst never drained within the iteration)",
    ),
    Column("burst_drain_p50_s", _F, "burst only: median of those burst drain times"),
)


# executor=process: the worker processes of the iteration (killed and respawned ones included),
# each measured by itself (CPU from psutil over its run, RSS peak from its VmHWM: exact).
# Null for the other executors, except processes and faults_injected (0).
# Not required of a file: results written before these columns existed still load.
PROCESS_COLUMNS: tuple[Column, ...] = (
    Column("processes", _I, "worker processes the workers were spread over (0: not executor=process)"),
    Column(
        "faults_injected",
        _I,
        "worker processes killed with SIGKILL mid-task (faults.kill) and respawned in the iteration",
    ),
    Column(
        "process_cpu_util_max_cores",
        _F,
        "the busiest worker process's (user + system CPU) / duration_s: near 1 means the worker"
        " processes, not SQLite, are the limit",
    ),
    Column("process_cpu_total_s", _F, "user + system CPU seconds of all worker processes together"),
    Column("process_rss_peak_max_bytes", _I, "largest peak RSS of any worker process (its VmHWM, exact)"),
    Column(
        "process_cpu_s",
        pa.list_(_F),
        "per worker process, in start order (respawns last): user + system CPU seconds over its run",
    ),
    Column(
        "process_rss_peak_bytes",
        pa.list_(_I),
        "per worker process, in start order: peak RSS (a killed one's high-water mark before the kill)",
    ),
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
    for c in (*IDENTITY_COLUMNS, *MEASURE_COLUMNS, *OPEN_LOOP_COLUMNS, *HOST_LOCK_COLUMNS, *PROCESS_COLUMNS)
}
