"""The thread executor: ``workers`` OS threads drain the backlog, each on plain sqlite3 connections.

Each worker thread runs the async executor's loop (claim, serve, ack), each
transaction on a connection of the pool: with a connection per worker
(``pool=per_worker``, or any pool at least as large as ``workers``) each
thread owns one outright; a smaller pool lends its connections first come,
first served, one transaction per connection at a time. ``sqlite3_step``
releases the GIL, so the threads' statements overlap as SQLite allows.

Busy errors are handled as in the async executor (``native`` retries at once,
``app`` sleeps a capped exponential backoff with full jitter). Each thread
counts into its own :class:`DrainStats` (merged at the end); the per-task
audit bookkeeping (:class:`~qbench.run.executors.common.Ledger`) is shared
and taken under one lock, twice per claim, never per statement.

The calling thread supervises: the iteration deadline, the livelock watchdog,
progress reports, Ctrl-C. Every stop is a shared event the workers check
between transactions (and the ``cpu`` and ``sleep`` services while they
serve), so they end promptly and every connection is closed before return;
a batch whose service a stop cut short is not acknowledged (its lease expires).
Task ``i`` is served for its time from :class:`~qbench.run.service.ServiceTimes`.
"""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from qbench.errors import LivelockError
from qbench.kinds import ServiceKind
from qbench.run.database import connect
from qbench.run.executors.common import (
    Ledger,
    LivelockWatch,
    SharedAcks,
    backoff_s,
    finished,
    merge_stats,
    service_times,
    start_clock,
)
from qbench.run.executors.lenders import Own, Shared
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProgressSink
from qbench.run.metrics import DrainStats, ResourceMonitor, ResourceUsage
from qbench.run.queues.bridge import NO_CONNECTION
from qbench.run.queues.protocol import Claimed, QueueUnderTest, connections_owner
from qbench.run.queues.sql import BusyError, Transaction, query, run_sync

T = TypeVar("T")

# a sleep service longer than this waits on the stop event instead, so Ctrl-C ends it
_SHORT_SLEEP_S = 0.1


class _Stopped(Exception):
    """The drain was stopped while a worker retried: it leaves its loop."""


class _Drain:
    def __init__(
        self,
        spec: DrainSpec,
        queue: QueueUnderTest,
        connections: list[sqlite3.Connection],
        shared: SharedAcks | None = None,
    ) -> None:
        self.spec = spec
        self.queue = queue
        self.stats = DrainStats.for_tasks(spec.tasks)
        self.ledger = Ledger(spec, self.stats, shared)
        self.service = service_times(spec)
        # taken by the ledger's calls and the lease-requeue schedule only
        self.lock = threading.Lock()
        # set on every stop: all acknowledged, deadline, watchdog, a worker's error, Ctrl-C
        self.stop = threading.Event()
        # set when every task is acknowledged or a worker failed: wakes the supervisor
        self.finished = threading.Event()
        self.errors: list[BaseException] = []
        self.deadline = math.inf
        self.next_requeue_at = 0.0
        self._tokens = itertools.count(spec.token_base + 1)  # next() on a count is atomic under the GIL
        self.workers = [_Worker(self, index) for index in range(spec.workers)]
        if not connections:  # a client-level queue: its calls run on its own connections
            for worker in self.workers:
                worker.lender = Own(NO_CONNECTION)
        elif len(connections) >= spec.workers:
            for worker, conn in zip(self.workers, connections, strict=False):
                worker.lender = Own(conn)
        else:
            lender = Shared(connections)
            for worker in self.workers:
                worker.lender = lender

    def token(self) -> int:
        return next(self._tokens)

    def busy_total(self) -> int:
        return sum(worker.stats.busy_total for worker in self.workers)


class _Worker:
    def __init__(self, drain: _Drain, index: int) -> None:
        self.drain = drain
        self.spec = drain.spec
        self.lender: Own | Shared
        # this thread's counters and timings; the per-task lists stay in the drain's stats
        self.stats = DrainStats.counters_only()
        self._rng = random.Random(0x9B + index)
        # lock waits go straight into this thread's timings (None: metrics.level=minimal)
        self._lock_sink = self.stats.lock_wait_s.append if self.spec.timings else None
        # transactions that found a connection free at once: each a pool wait of exactly 0,
        # counted here and written as zeros once the loop ends (not timed in the hot loop)
        self.no_wait = 0

    def run(self) -> None:
        drain = self.drain
        try:
            self.loop()
        except _Stopped:
            pass
        except BaseException as exc:
            drain.errors.append(exc)
            drain.finished.set()
            drain.stop.set()
        finally:
            if self.spec.timings:
                self.stats.add_zero_pool_waits(self.no_wait)

    def transact(self, make_tx: Callable[..., Transaction[T]], *args: Any) -> T | None:
        """Run ``make_tx(*args, now)`` under the busy policy; None when its retries ran out.

        Raises:
            _Stopped: the drain stopped while this transaction was being retried.
        """
        stats, spec, lender = self.stats, self.spec, self.lender
        attempt = 0
        while True:
            # a connection the thread owns, or one free in the pool, is not waited for: its
            # pool wait is 0 and only counted; a wait for a lent connection is timed
            conn = lender.acquire_now()
            if conn is not None:
                self.no_wait += 1
            elif spec.timings:
                waited = time.perf_counter()
                conn = lender.acquire()
                stats.pool_wait_s.append(time.perf_counter() - waited)
            else:
                conn = lender.acquire()
            stats.transactions += 1
            try:
                return run_sync(conn, make_tx(*args, time.time()), self._lock_sink)
            except BusyError as err:
                stats.count_busy(err)
                _rollback(conn)
            finally:
                lender.release(conn)
            attempt += 1
            if attempt > spec.max_retries:
                return None
            if self.drain.stop.is_set():
                raise _Stopped
            stats.retries += 1
            # native: 0, a bare yield of the GIL so the other threads run (SQLite's handler already waited)
            time.sleep(backoff_s(spec, attempt, self._rng))

    def serve(self, task: Claimed) -> None:
        kind, drain = self.spec.service_kind, self.drain
        seconds = drain.service.seconds(task.id - self.spec.first_id)
        if kind is ServiceKind.SLEEP:
            seconds = min(seconds, max(0.0, drain.deadline - time.perf_counter()))
            if seconds <= _SHORT_SLEEP_S:
                time.sleep(seconds)
            else:
                drain.stop.wait(seconds)
        elif kind is ServiceKind.CPU:
            end = min(time.perf_counter() + seconds, drain.deadline)
            stop = drain.stop
            while time.perf_counter() < end and not stop.is_set():
                pass

    def idle(self) -> None:
        """Nothing claimable: requeue expired leases now and then, then wait a little."""
        drain = self.drain
        now = time.time()
        with drain.lock:
            due = now >= drain.next_requeue_at
            if due:
                drain.next_requeue_at = now + self.spec.lease_s / 4
        if due:
            self.transact(drain.queue.requeue_expired)
        drain.stop.wait(self.spec.poll_interval_s)
        if drain.ledger.shared is not None and drain.ledger.complete:
            drain.finished.set()  # the other processes acknowledged the rest
            drain.stop.set()

    def loop(self) -> None:
        """Claim, serve, acknowledge, until the drain stops."""
        drain, stats, queue = self.drain, self.stats, self.drain.queue
        ledger, lock, stop = drain.ledger, drain.lock, drain.stop
        timings = self.spec.timings
        noop = self.spec.service_kind is ServiceKind.NOOP
        while not stop.is_set():
            token = drain.token()
            started = time.perf_counter() if timings else 0.0
            claimed_at = time.time()
            claimed = self.transact(queue.claim, token)
            if claimed is None:
                stats.claims_given_up += 1
                continue
            if not claimed:
                stats.claims_empty += 1
                self.idle()
                continue
            if timings:
                stats.claim_latency_s.append(time.perf_counter() - started)
            with lock:
                ledger.hold(claimed, token, claimed_at)
            if not noop:
                for task in claimed:
                    if timings:
                        served = time.perf_counter()
                        self.serve(task)
                        stats.service_s.append(time.perf_counter() - served)
                    else:
                        self.serve(task)
                if stop.is_set() or time.perf_counter() >= drain.deadline:
                    return  # service cut short by a stop or the deadline: not acknowledged
            with lock:
                ids = ledger.executed(claimed)
            acked = self.transact(queue.ack, token, ids)
            with lock:
                ledger.release(token, ids)
                complete = ledger.count_acks(ids, acked)
            if complete:
                drain.finished.set()
                stop.set()


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed COMMIT in a rollback journal leaves the transaction open; a failed
    # statement may already have rolled it back. Only roll back what is open.
    if conn.in_transaction:
        conn.execute(query("rollback"))


def _supervise(drain: _Drain, on_progress: ProgressSink | None) -> tuple[bool, LivelockError | None]:
    """Wait for the workers: (timed out, the livelock the watchdog found or None)."""
    spec, ledger = drain.spec, drain.ledger
    start = ledger.t_start
    watch = None
    if spec.watchdog_s > 0:
        watch = LivelockWatch(spec, spec.watchdog_s, start, ledger.acked_unique, drain.busy_total())
    next_look = start + (watch.tick if watch is not None else math.inf)
    next_report = start + 0.5 if on_progress is not None else math.inf
    while True:
        now = time.perf_counter()
        wake = min(drain.deadline, next_look, next_report)
        if drain.finished.wait(max(0.0, wake - now)):
            return False, None
        now = time.perf_counter()
        if now >= drain.deadline:
            return True, None
        if watch is not None and now >= next_look:
            found = watch.look(now, ledger.acked_unique, drain.busy_total())
            if found is not None:
                return False, found
            next_look = now + watch.tick
        if on_progress is not None and now >= next_report:
            elapsed = now - start
            on_progress(ledger.acked_unique, ledger.acked_unique / elapsed if elapsed > 0 else 0.0)
            next_report = now + 0.5


def _measured(
    drain: _Drain,
    threads: list[threading.Thread],
    on_progress: ProgressSink | None,
    monitor: ResourceMonitor | None,
) -> tuple[bool, LivelockError | None, ResourceUsage | None]:
    """Start the clock and the workers, supervise them until they stop: (timed out, the
    livelock found or None, the resource usage over the run)."""
    spec = drain.spec
    usage: ResourceUsage | None = None
    if monitor is not None:
        monitor.start()
    try:
        drain.deadline = start_clock(spec, drain.ledger)
        for thread in threads:
            thread.start()
        timed_out, livelock = _supervise(drain, on_progress)
        drain.stop.set()
        for thread in threads:
            thread.join()
    finally:
        if monitor is not None:
            usage = monitor.stop()
    return timed_out, livelock, usage


def _run(
    spec: DrainSpec,
    queue: QueueUnderTest,
    on_progress: ProgressSink | None,
    monitor: ResourceMonitor | None,
    shared: SharedAcks | None = None,
) -> DrainResult:
    connections: list[sqlite3.Connection] = []
    threads: list[threading.Thread] = []
    drain: _Drain | None = None
    owner = connections_owner(queue)
    opened = 0
    try:
        if owner is not None:  # a client-level queue opens its own, before the clock starts
            opened = owner.open_for(spec.workers)
        else:
            for _ in range(spec.pool_size):
                # handed to one thread at a time (owned, or lent by the pool)
                connections.append(connect(spec.db_path, spec.settings, check_same_thread=False))
        drain = _Drain(spec, queue, connections, shared)
        threads = [
            threading.Thread(target=worker.run, name=f"qbench-worker-{index}", daemon=True)
            for index, worker in enumerate(drain.workers)
        ]
        timed_out, livelock, usage = _measured(drain, threads, on_progress, monitor)
        if drain.errors:
            raise drain.errors[0]
        for worker in drain.workers:
            merge_stats(drain.stats, worker.stats)
        ledger = drain.ledger
        end = ledger.t_last_ack if ledger.acked_unique else time.perf_counter()
        return DrainResult(
            drain.stats,
            end - ledger.t_start,
            len(connections) or opened,
            timed_out,
            usage,
            livelock,
            ledger.t_start,
        )
    finally:
        if drain is not None:
            drain.stop.set()
        # the workers stop between transactions: wait for them before closing their connections
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        for conn in connections:
            conn.close()
        if owner is not None:
            owner.close_all()


def run_drain_threads(
    spec: DrainSpec,
    queue: QueueUnderTest,
    *,
    on_progress: ProgressSink | None = None,
    monitor: ResourceMonitor | None = None,
    shared: SharedAcks | None = None,
) -> DrainResult:
    """Drain the backlog already in ``spec.db_path`` with ``spec.workers`` threads;
    every connection is closed on return. With ``shared`` (a worker process of
    executor=process) the drain ends once every process's first acks cover the tasks.

    Raises:
        DrainTimeoutError: the backlog was not drained within ``spec.timeout_s``.
        LivelockError: no task got its first ack for ``spec.watchdog_s`` while busy errors grew.
        KeyboardInterrupt: Ctrl-C: raised once the workers have stopped and every connection is closed.
    """
    result = _run(spec, queue, on_progress, monitor, shared)
    return finished(spec, result)
