"""The async executor: ``workers`` coroutines drain the backlog over a shared connection pool.

Each claim and each ack is one transaction on a connection taken from the
pool and given back right after, so a task's service time never holds a
connection. Busy errors are caught per transaction, counted by phase and
extended code, and handled by the busy policy: ``native`` retries at once
(SQLite's busy handler already waited), ``app`` sleeps a capped exponential
backoff with full jitter first. A transaction that exhausts its retries is
given up: a given-up claim is simply tried again, a given-up ack leaves the
lease to expire so the task is redelivered (at-least-once).

Two guards run beside the workers, never inside their loop. The iteration
deadline (``iteration_timeout_s``) holds for every service kind: the ``cpu``
service's busy work, which holds the event loop, stops at the deadline (and
at Ctrl-C). The watchdog (``watchdog_s``) wakes about once a second and
fails the drain as a livelock when no task got its first ack for
``watchdog_s`` seconds while the busy errors grew at every wake-up; a drain
that is merely slow (long service times, no busy errors) is never one.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from qbench.errors import LivelockError
from qbench.kinds import BusyPolicy, ServiceKind
from qbench.run.executors.common import Ledger, LivelockWatch, SharedAcks, backoff_s, timeout_error
from qbench.run.executors.interrupts import Interrupts, run_interruptibly
from qbench.run.executors.pool import ConnectionPool
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProgressSink
from qbench.run.metrics import DrainStats, ResourceMonitor, ResourceUsage
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sql import BusyError, Transaction, query, run_async

T = TypeVar("T")


class _Drain:
    def __init__(
        self, spec: DrainSpec, queue: QueueUnderTest, pool: ConnectionPool, shared: SharedAcks | None = None
    ) -> None:
        self.spec = spec
        self.queue = queue
        self.pool = pool
        self.stats = DrainStats.for_tasks(spec.tasks)
        # per-task audit bookkeeping, shared with the other executors
        self.ledger = Ledger(spec, self.stats, shared)
        self.done = asyncio.Event()
        # perf_counter time at which the iteration times out: cpu service stops there
        self.deadline = math.inf
        # the task running the drain: cancelled on Ctrl-C (see qbench.run.executors.interrupts)
        self.main: asyncio.Task[Any] | None = None
        self.next_requeue_at = 0.0
        self._tokens = itertools.count(spec.token_base + 1)
        self._rng = random.Random(0x9B)
        self._timings = spec.timings

    @property
    def acked_unique(self) -> int:
        return self.ledger.acked_unique

    def _lock_wait(self, seconds: float) -> None:
        self.stats.lock_wait_s.append(seconds)

    async def transact(self, make_tx: Callable[..., Transaction[T]], *args: Any) -> T | None:
        """Run ``make_tx(*args, now)`` under the busy policy; None when its retries ran out.

        ``now`` (wall clock, for leases) is taken afresh for every attempt.
        """
        stats = self.stats
        sink = self._lock_wait if self._timings else None
        attempt = 0
        while True:
            if self._timings:
                waited = time.perf_counter()
                conn = await self.pool.acquire()
                stats.pool_wait_s.append(time.perf_counter() - waited)
            else:
                conn = await self.pool.acquire()
            stats.transactions += 1
            try:
                return await run_async(conn, make_tx(*args, time.time()), sink)
            except BusyError as err:
                stats.count_busy(err)
                await _rollback(conn)
            finally:
                self.pool.release(conn)
            attempt += 1
            if attempt > self.spec.max_retries:
                return None
            stats.retries += 1
            await self._backoff(attempt)

    async def _backoff(self, attempt: int) -> None:
        if self.spec.busy_policy is BusyPolicy.APP:
            await asyncio.sleep(backoff_s(self.spec, attempt, self._rng))
        else:
            await asyncio.sleep(0)  # let other workers run; SQLite's handler already waited

    async def _serve(self, task: Claimed) -> None:
        kind, seconds = self.spec.service_kind, self.spec.service_s
        if kind is ServiceKind.SLEEP:
            await asyncio.sleep(seconds)
        elif kind is ServiceKind.CPU:
            # Busy work holds the event loop: nothing else runs until it ends, so it ends
            # at the iteration's deadline and on Ctrl-C, not only when its time is served.
            end = min(time.perf_counter() + seconds, self.deadline)
            main = self.main
            while time.perf_counter() < end and not (main is not None and main.cancelling()):
                pass

    async def _idle(self) -> None:
        """Nothing claimable: requeue expired leases now and then, then wait a little."""
        now = time.time()
        if now >= self.next_requeue_at:
            self.next_requeue_at = now + self.spec.lease_s / 4
            await self.transact(self.queue.requeue_expired)
        try:
            await asyncio.wait_for(self.done.wait(), self.spec.poll_interval_s)
        except TimeoutError:
            pass
        if self.ledger.shared is not None and self.ledger.complete:
            self.done.set()  # the other processes acknowledged the rest

    async def worker(self) -> None:
        """Claim, serve, acknowledge, until every backlog task is acknowledged.

        The hot loop: every await here is a transaction or a task's service, and
        the bookkeeping steps are plain calls, once per claim.
        """
        stats, timings, ledger = self.stats, self._timings, self.ledger
        noop = self.spec.service_kind is ServiceKind.NOOP
        while not self.done.is_set():
            token = next(self._tokens)
            started = time.perf_counter() if timings else 0.0
            claimed_at = time.time()
            claimed = await self.transact(self.queue.claim, token)
            if claimed is None:
                stats.claims_given_up += 1
                continue
            if not claimed:
                stats.claims_empty += 1
                await self._idle()
                continue
            if timings:
                stats.claim_latency_s.append(time.perf_counter() - started)
            ledger.hold(claimed, token, claimed_at)
            # noop: nothing to serve, no coroutine, no timing (service latency stays null)
            if not noop:
                for task in claimed:
                    if timings:
                        served = time.perf_counter()
                        await self._serve(task)
                        stats.service_s.append(time.perf_counter() - served)
                    else:
                        await self._serve(task)
            ids = ledger.executed(claimed)
            acked = await self.transact(self.queue.ack, token, ids)
            ledger.release(token, ids)
            if ledger.count_acks(ids, acked):
                self.done.set()


async def _rollback(conn: aiosqlite.Connection) -> None:
    # A failed COMMIT in a rollback journal leaves the transaction open; a failed
    # statement may already have rolled it back. Only roll back what is open.
    if conn.in_transaction:
        await conn.execute(query("rollback"))


async def _drain(
    spec: DrainSpec,
    queue: QueueUnderTest,
    on_progress: ProgressSink | None,
    monitor: ResourceMonitor | None,
    interrupts: Interrupts,
    shared: SharedAcks | None = None,
) -> DrainResult:
    interrupts.attach()
    pool = await ConnectionPool.open(str(spec.db_path), spec.pool_size, spec.settings)
    usage: ResourceUsage | None = None
    try:
        drain = _Drain(spec, queue, pool, shared)
        drain.main = interrupts.main
        if monitor is not None:
            monitor.start()
        try:
            drain.ledger.t_start = time.perf_counter()
            drain.deadline = drain.ledger.t_start + spec.timeout_s
            if spec.on_start is not None:
                spec.on_start(drain.ledger.t_start)
            timed_out, livelock = await _run_workers(drain, on_progress)
        finally:
            if monitor is not None:
                usage = monitor.stop()
        ledger = drain.ledger
        end = ledger.t_last_ack if ledger.acked_unique else time.perf_counter()
        return DrainResult(
            drain.stats, end - ledger.t_start, len(pool), timed_out, usage, livelock, ledger.t_start
        )
    finally:
        if monitor is not None and usage is None:
            monitor.stop()  # the sampler thread must not outlive a failed drain
        await pool.close()


async def _run_workers(drain: _Drain, on_progress: ProgressSink | None) -> tuple[bool, LivelockError | None]:
    """Run the workers until every task is acknowledged, the deadline passes or the watchdog fires.

    Returns:
        (timed out, the livelock the watchdog found or None); a worker's exception propagates.
    """
    spec = drain.spec
    workers = [asyncio.create_task(drain.worker()) for _ in range(spec.workers)]
    everyone = asyncio.gather(*workers)
    helpers = []
    if on_progress is not None:
        helpers.append(asyncio.create_task(_report(drain, on_progress)))
    watchdog = asyncio.create_task(_watchdog(drain, spec.watchdog_s)) if spec.watchdog_s > 0 else None
    try:
        waiting: set[asyncio.Future[Any]] = {everyone} if watchdog is None else {everyone, watchdog}
        done, _ = await asyncio.wait(waiting, timeout=spec.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if everyone in done:
            everyone.result()
            return False, None
        if watchdog is not None and watchdog in done:
            return False, watchdog.result()
        return True, None
    finally:
        everyone.cancel()
        for task in (*workers, *helpers, *([watchdog] if watchdog else [])):
            task.cancel()
        await asyncio.gather(*workers, *helpers, *([watchdog] if watchdog else []), return_exceptions=True)
        if everyone.done() and not everyone.cancelled():
            everyone.exception()  # retrieved: a worker's error is raised above, never logged twice


async def _watchdog(drain: _Drain, window_s: float) -> LivelockError:
    """Look about once a second; return the livelock :class:`LivelockWatch` finds."""
    stats = drain.stats
    watch = LivelockWatch(drain.spec, window_s, time.perf_counter(), drain.acked_unique, stats.busy_total)
    while True:
        await asyncio.sleep(watch.tick)
        found = watch.look(time.perf_counter(), drain.acked_unique, stats.busy_total)
        if found is not None:
            return found


async def _report(drain: _Drain, on_progress: ProgressSink) -> None:
    while True:
        await asyncio.sleep(0.5)
        ledger = drain.ledger
        elapsed = time.perf_counter() - ledger.t_start
        on_progress(ledger.acked_unique, ledger.acked_unique / elapsed if elapsed > 0 else 0.0)


def run_drain(
    spec: DrainSpec,
    queue: QueueUnderTest,
    *,
    on_progress: ProgressSink | None = None,
    monitor: ResourceMonitor | None = None,
    shared: SharedAcks | None = None,
) -> DrainResult:
    """Drain the backlog already in ``spec.db_path``; every connection is closed on return.

    With ``shared`` (a worker process of executor=process) the drain ends once every
    process's first acks together cover the tasks.

    Raises:
        DrainTimeoutError: the backlog was not drained within ``spec.timeout_s``.
        LivelockError: no task got its first ack for ``spec.watchdog_s`` while busy errors grew.
        KeyboardInterrupt: Ctrl-C (or a handled SIGTERM): raised once every connection is closed
            (:mod:`qbench.run.executors.interrupts`).
    """
    result = run_interruptibly(
        lambda interrupts: _drain(spec, queue, on_progress, monitor, interrupts, shared)
    )
    if result.livelock is not None:
        raise result.livelock
    if result.timed_out:
        raise timeout_error(spec, result.stats)
    return result
