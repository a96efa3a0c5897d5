"""The process executor: ``workers`` spread over OS processes, spawned before the clock starts.

``spec.workers`` are spread as evenly as possible over ``spec.processes``
processes (0: one per worker), each started with the ``spawn`` method and
running its share as :mod:`~qbench.run.executors.process_worker` describes.
Every process opens its connections, then waits; once all are ready the
parent takes ``t_start`` and releases them together, so start-up is never
inside ``duration_s``. The pool settings apply per process: the job's pool
(``pool_connections`` of the config) is split over the processes in
proportion to their workers, at least one connection each (connections
cannot be shared between processes), so ``pool=fixed pool.size=4`` over two
processes of four workers is two pools of two, and ``pool=shared`` one
connection per process.

The parent supervises: the iteration deadline from ``t_start``, the livelock
watchdog over the shared first-ack and busy totals, progress reports,
``faults.kill`` (:mod:`~qbench.run.executors.process_faults`), a process that
fails (its error comes back as one line and fails the drain; the others are
stopped) and Ctrl-C or SIGTERM (the processes are stopped, their connections
closed, the KeyboardInterrupt goes on). No process outlives the call: each is
asked to stop (SIGTERM), then killed, and joined.

The processes' stats are merged exactly (:func:`merge_process_stats`). Job
totals: ``usage`` CPU is the parent's plus every worker process's, its RSS
peak the largest of any process; each process's own figures are in
``DrainResult.processes``.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from qbench.errors import DrainTimeoutError, LivelockError
from qbench.run.executors.common import LivelockWatch, merge_stats
from qbench.run.executors.process_faults import KillSchedule
from qbench.run.executors.process_pool import WorkerProcesses
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProcessUsage, ProgressSink
from qbench.run.metrics import DrainStats, ResourceMonitor, ResourceUsage
from qbench.run.queues.protocol import QueueUnderTest

# seconds between the parent's looks at the shared totals
_TICK_S = 0.05


def shares(workers: int, processes: int) -> list[int]:
    """Workers per process, as even as possible (the first ones get the remainder)."""
    base, extra = divmod(workers, processes)
    return [base + (1 if index < extra else 0) for index in range(processes)]


def pool_share(pool_size: int, workers: int, share: int) -> int:
    """A process's part of the job's pool: proportional to its workers, at least one."""
    if share == 1:
        return 1
    return max(1, math.ceil(pool_size * share / workers))


def merge_process_stats(
    parts: Sequence[tuple[DrainStats, float]], *, claims_summed: bool = False
) -> DrainStats:
    """Merge the worker processes' stats; each part comes with the offset of its clock's start
    from the drain's (``part t_start - drain t_start``), added to its per-task times.

    Per task: claims are the largest count (each process already took the attempts the
    queue reported, so the largest is the task's) or, with ``claims_summed`` (a client-level
    queue, which reports no attempts: each process counted its own), the sum; executions and
    acks are summed, the first claim and the first ack are the earliest. Counters are summed,
    timings concatenated.
    """
    first, offset = parts[0]
    merged = DrainStats(
        claims=first.claims.copy(),
        executions=first.executions.copy(),
        acks=first.acks.copy(),
        e2e_s=first.e2e_s + offset,
        claimed_s=first.claimed_s + offset,
    )
    _add_counters(merged, first)
    for stats, offset in parts[1:]:
        if claims_summed:
            merged.claims += stats.claims
        else:
            np.maximum(merged.claims, stats.claims, out=merged.claims)
        merged.executions += stats.executions
        merged.acks += stats.acks
        # fmin: NaN (never) loses to any time
        np.fmin(merged.e2e_s, stats.e2e_s + offset, out=merged.e2e_s)
        np.fmin(merged.claimed_s, stats.claimed_s + offset, out=merged.claimed_s)
        _add_counters(merged, stats)
    return merged


def _add_counters(into: DrainStats, part: DrainStats) -> None:
    merge_stats(into, part)
    into.acks_rejected += part.acks_rejected
    into.acks_given_up += part.acks_given_up
    into.acks_unknown += part.acks_unknown
    into.double_handed += part.double_handed


def _usage(
    parent: ResourceUsage | None, processes: list[ProcessUsage], io: tuple[int, int] | None
) -> ResourceUsage | None:
    """The job totals: the parent's CPU plus every worker process's, the largest RSS peak."""
    if parent is None:
        return None
    peaks = [p.rss_peak_bytes for p in processes] + ([parent.rss_peak_bytes] if parent.rss_peak_bytes else [])
    return replace(
        parent,
        cpu_user_s=parent.cpu_user_s + sum(p.cpu_user_s for p in processes),
        cpu_sys_s=parent.cpu_sys_s + sum(p.cpu_sys_s for p in processes),
        rss_peak_bytes=max(peaks) if peaks else None,
        io_read_bytes=None if io is None or parent.io_read_bytes is None else parent.io_read_bytes + io[0],
        io_write_bytes=None if io is None or parent.io_write_bytes is None else parent.io_write_bytes + io[1],
    )


@dataclass
class _Outcome:
    timed_out: bool = False
    livelock: LivelockError | None = None


def _supervise(
    pool: WorkerProcesses, spec: DrainSpec, kills: KillSchedule, on_progress: ProgressSink | None
) -> _Outcome:
    """Until every process has reported, the deadline passed or the watchdog fired."""
    t_start = pool.t_start
    deadline = t_start + spec.timeout_s
    watch = None
    if spec.watchdog_s > 0:
        watch = LivelockWatch(spec, spec.watchdog_s, t_start, pool.acked(), pool.busy())
    next_look = t_start + (watch.tick if watch is not None else math.inf)
    next_report = t_start + 0.5 if on_progress is not None else math.inf
    while not pool.finished():
        now = time.perf_counter()
        if now >= deadline:
            return _Outcome(timed_out=True)
        if watch is not None and now >= next_look:
            found = watch.look(now, pool.acked(), pool.busy())
            if found is not None:
                return _Outcome(livelock=found)
            next_look = now + watch.tick
        if on_progress is not None and now >= next_report:
            acked = pool.acked()
            on_progress(acked, acked / (now - t_start) if now > t_start else 0.0)
            next_report = now + 0.5
        kills.step(pool)
        wake = min(deadline, next_look, next_report, now + (_TICK_S if kills.pending else 1.0))
        pool.pump(max(0.0, wake - time.perf_counter()))
    return _Outcome()


def _result(pool: WorkerProcesses, spec: DrainSpec, usage: ResourceUsage | None, faults: int) -> DrainResult:
    parts = pool.parts()
    if parts:
        stats = merge_process_stats(parts, claims_summed=spec.claims_summed)
    else:
        stats = DrainStats.for_tasks(spec.tasks)
    acked = stats.e2e_s[~np.isnan(stats.e2e_s)]
    duration = float(acked.max()) if acked.size else time.perf_counter() - pool.t_start
    processes = pool.usage()
    return DrainResult(
        stats=stats,
        duration_s=duration,
        pool_connections=pool.pool_connections,
        timed_out=False,
        usage=_usage(usage, processes, pool.io()),
        t_start=pool.t_start,
        processes=processes,
        faults_injected=faults,
    )


def _timeout(spec: DrainSpec, acked: int) -> DrainTimeoutError:
    return DrainTimeoutError(
        f"the backlog was not drained within iteration_timeout_s={spec.timeout_s:g}: "
        f"{acked} of {spec.tasks} tasks acknowledged"
    )


def run_drain_processes(
    spec: DrainSpec,
    queue: QueueUnderTest,
    *,
    on_progress: ProgressSink | None = None,
    monitor: ResourceMonitor | None = None,
) -> DrainResult:
    """Drain the backlog already in ``spec.db_path`` with worker processes; on return every
    process has ended and every connection is closed.

    Raises:
        DrainTimeoutError: the backlog was not drained within ``spec.timeout_s`` of the release.
        LivelockError: no task got its first ack for ``spec.watchdog_s`` while busy errors grew.
        WorkerProcessError: a worker process failed, died, or did not start in time.
        KeyboardInterrupt: Ctrl-C (or a handled SIGTERM): raised once every process has ended.
    """
    on_start, spec = spec.on_start, replace(spec, on_start=None)  # the hook never leaves this process
    processes = spec.processes or spec.workers
    pool = WorkerProcesses(spec, queue, multiprocessing.get_context("spawn"), fence=spec.faults_kill > 0)
    kills = KillSchedule(spec)
    usage: ResourceUsage | None = None
    try:
        for share in shares(spec.workers, processes):
            pool.spawn(share, pool_share(spec.pool_size, spec.workers, share))
        pool.wait_ready()
        if monitor is not None:
            monitor.start()
        try:
            pool.release()
            if on_start is not None:
                on_start(pool.t_start)
            outcome = _supervise(pool, spec, kills, on_progress)
        finally:
            if monitor is not None:
                usage = monitor.stop()
        if outcome.livelock is not None:
            raise outcome.livelock
        if outcome.timed_out:
            raise _timeout(spec, pool.acked())
        return _result(pool, spec, usage, kills.injected)
    finally:
        pool.close()
