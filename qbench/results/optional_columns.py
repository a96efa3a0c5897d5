"""The column blocks a results file need not have: each was added after files existed without it
(the host guard, the queue under test, open-loop workloads, worker processes), so readers
accept files without them."""

from __future__ import annotations

import pyarrow as pa

from qbench.results.column import _F, _I, _S, Column

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

# The queue under test (run/queues): what it is and what it ran with. Not required of a file:
# results written before client-level queues existed still load.
QUEUE_COLUMNS: tuple[Column, ...] = (
    Column(
        "queue_level",
        _S,
        "statement (qbench runs the queue's SQL: the reference queue or a custom statement-level class) or client (a library driven through its own API: huey, litequeue, persist_queue, custom)",
    ),
    Column("queue_library", _S, "the queue and its version: qbench reference queue, huey 3.5.4, ..."),
    Column(
        "queue_journal_mode_in_effect",
        _S,
        "journal mode the queue ran with, read back from its connection (a client-level queue's own)",
    ),
    Column(
        "queue_synchronous_in_effect",
        _I,
        "PRAGMA synchronous the queue ran with (0 off, 1 normal, 2 full, 3 extra; null: not visible)",
    ),
    Column(
        "queue_busy_timeout_ms_in_effect",
        _I,
        "busy timeout the queue ran with, read back from its connection (null: not visible)",
    ),
    Column(
        "tasks_lost_expected",
        _I,
        "of tasks_lost, those the queue's declared delivery allows: at_most_once with worker processes killed (faults.kill) holding them; a finding about the queue, not a failure",
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
