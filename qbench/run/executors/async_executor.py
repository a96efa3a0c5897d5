"""The async executor: ``workers`` coroutines drain the backlog over a shared connection pool.

Each claim and each ack is one transaction on a connection taken from the
pool and given back right after, so a task's service time never holds a
connection. A transaction runs whole on the connection's own thread in one
call (:func:`~qbench.run.executors.pool.on_thread`: one round trip, however
many statements), and the ack of a batch carries the claim of the next one
in the same call: two transactions, two commits, one round trip, the
connection held for both (so with a pool smaller than ``workers`` a
connection is lent for one transaction at a time, or for this pair). The
last acks of a drain go alone. Busy errors are caught per transaction,
counted by phase and extended code, and handled by the busy policy:
``native`` retries at once (SQLite's busy handler already waited), ``app``
sleeps a capped exponential backoff with full jitter first. A transaction
that exhausts its retries is given up: a given-up claim is simply tried
again, a given-up ack leaves the lease to expire so the task is redelivered
(at-least-once). A busy ack of a pair claims nothing and is retried alone;
a busy claim after a committed ack is retried alone.

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
from functools import partial
from typing import Any, NamedTuple, TypeVar

import aiosqlite

from qbench.errors import LivelockError
from qbench.kinds import BusyPolicy, ServiceKind
from qbench.run.executors.common import (
    Ledger,
    LivelockWatch,
    SharedAcks,
    backoff_s,
    finished,
    service_times,
    start_clock,
)
from qbench.run.executors.interrupts import Interrupts, run_interruptibly
from qbench.run.executors.pool import ConnectionPool, on_thread
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProgressSink
from qbench.run.metrics import DrainStats, ResourceMonitor, ResourceUsage
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sql import BusyError, Transaction, run_or_roll_back, run_then

T = TypeVar("T")


class _Batch(NamedTuple):
    """One claim: its lease token, the wall-clock time before it ran, what it leased (None: given up)."""

    token: int
    claimed_at: float
    tasks: list[Claimed] | None


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
        self.service = service_times(spec)
        self.done = asyncio.Event()
        # perf_counter time at which the iteration times out: cpu service stops there
        self.deadline = math.inf
        # the task running the drain: cancelled on Ctrl-C (see qbench.run.executors.interrupts)
        self.main: asyncio.Task[Any] | None = None
        self.next_requeue_at = 0.0
        self._tokens = itertools.count(spec.token_base + 1)
        self._rng = random.Random(0x9B)
        self._timings = spec.timings
        # Lock waits are appended on the connections' threads: array.append is one C call
        # under the GIL, so concurrent appends from several threads are safe.
        self._lock_sink = self.stats.lock_wait_s.append if spec.timings else None
        # transactions that found a connection free at once: each a pool wait of exactly 0,
        # counted here and written as zeros when the drain ends (not timed in the hot loop)
        self.no_wait = 0

    @property
    def acked_unique(self) -> int:
        return self.ledger.acked_unique

    async def _acquire(self) -> aiosqlite.Connection:
        """A connection of the pool: at once when one is free (no await, no timing: a pool
        wait of 0), else the time spent waiting for it is recorded."""
        conn = self.pool.acquire_now()
        if conn is not None:
            self.no_wait += 1
            return conn
        if not self._timings:
            return await self.pool.acquire()
        waited = time.perf_counter()
        conn = await self.pool.acquire()
        self.stats.pool_wait_s.append(time.perf_counter() - waited)
        return conn

    async def transact(self, make_tx: Callable[..., Transaction[T]], *args: Any, failed: int = 0) -> T | None:
        """Run ``make_tx(*args, now)`` under the busy policy; None when its retries ran out.

        Each attempt is one call on a pooled connection's thread (rolled back there after a
        busy error); ``now`` (wall clock, for leases) is taken afresh for every attempt.
        ``failed``: attempts that already ended in a busy error (counted by the caller).
        """
        stats, attempt = self.stats, failed
        while True:
            if attempt:
                if attempt > self.spec.max_retries:
                    return None
                stats.retries += 1
                await self._backoff(attempt)
            conn = await self._acquire()
            stats.transactions += 1
            try:
                return await on_thread(
                    conn,
                    partial(run_or_roll_back, tx=make_tx(*args, time.time()), on_lock_wait=self._lock_sink),
                )
            except BusyError as err:
                stats.count_busy(err)
            finally:
                self.pool.release(conn)
            attempt += 1

    async def _backoff(self, attempt: int) -> None:
        if self.spec.busy_policy is BusyPolicy.APP:
            await asyncio.sleep(backoff_s(self.spec, attempt, self._rng))
        else:
            await asyncio.sleep(0)  # let other workers run; SQLite's handler already waited

    async def claim(self) -> _Batch:
        token, claimed_at = next(self._tokens), time.time()
        started = time.perf_counter()
        tasks = await self.transact(self.queue.claim, token)
        if tasks and self._timings:
            self.stats.claim_latency_s.append(time.perf_counter() - started)
        return _Batch(token, claimed_at, tasks)

    def _may_complete(self, acks: int) -> bool:
        """These acks may be the last ones: the ack then goes alone, with no claim after it."""
        ledger = self.ledger
        # across processes the total is another process's counter: the claim after the last
        # ack finds nothing (every task is done), so it is only skipped within one process
        return self.done.is_set() or (ledger.shared is None and ledger.acked_unique + acks >= self.spec.tasks)

    async def ack_and_claim(self, token: int, ids: list[int]) -> tuple[list[int] | None, _Batch | None]:
        """Acknowledge ``ids``, and claim the next batch in the same call on the same connection
        (two transactions, two commits, one round trip; the connection is held for both).

        Returns:
            (the acked ids, None when the ack was given up; the next claim, None when it did
            not travel with the ack: a busy ack is retried alone, and so are the last acks).
        """
        if self._may_complete(len(ids)):
            return await self.transact(self.queue.ack, token, ids), None
        stats, queue = self.stats, self.queue
        conn = self.pool.acquire_now()
        if conn is None:
            conn = await self._acquire()
        else:
            self.no_wait += 1
        next_token, now = next(self._tokens), time.time()  # after the pool wait: the lease's start
        stats.transactions += 1
        trip = partial(
            run_then,
            first=queue.ack(token, ids, now),
            then=queue.claim(next_token, now),
            on_lock_wait=self._lock_sink,
        )
        busy_ack: BusyError | None = None
        try:
            acked, outcome, claim_started = await on_thread(conn, trip)
        except BusyError as err:  # the ack: rolled back there, nothing claimed
            busy_ack = err
        finally:
            self.pool.release(conn)
        if busy_ack is not None:
            stats.count_busy(busy_ack)
            return await self.transact(queue.ack, token, ids, failed=1), None
        stats.transactions += 1
        tasks: list[Claimed] | None
        if isinstance(outcome, BusyError):
            stats.count_busy(outcome)
            tasks = await self.transact(queue.claim, next_token, failed=1)
        else:
            tasks = outcome
        if tasks and self._timings:
            stats.claim_latency_s.append(time.perf_counter() - claim_started)
        return acked, _Batch(next_token, now, tasks)

    async def _serve(self, task: Claimed) -> None:
        kind = self.spec.service_kind
        seconds = self.service.seconds(task.id - self.spec.first_id)
        if kind is ServiceKind.SLEEP:
            await asyncio.sleep(seconds)
        elif kind is ServiceKind.CPU:
            # Busy work holds the event loop: nothing else runs until it ends, so it ends
            # at the iteration's deadline and on Ctrl-C, not only when its time is served.
            end = min(time.perf_counter() + seconds, self.deadline)
            main = self.main
            while time.perf_counter() < end and not (main is not None and main.cancelling()):
                pass

    async def serve(self, tasks: list[Claimed]) -> None:
        """Serve a claimed batch, task by task (noop: nothing to serve, no timing)."""
        if self.spec.service_kind is ServiceKind.NOOP:
            return
        for task in tasks:
            if self._timings:
                served = time.perf_counter()
                await self._serve(task)
                self.stats.service_s.append(time.perf_counter() - served)
            else:
                await self._serve(task)

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
        """Claim, serve, acknowledge (and claim the next batch in the same call), until every
        backlog task is acknowledged.

        The hot loop: every await here is one call on a connection's thread or a task's
        service, and the bookkeeping steps are plain calls, once per claim.
        """
        stats, ledger = self.stats, self.ledger
        batch: _Batch | None = None
        while not self.done.is_set():
            if batch is None:
                batch = await self.claim()
            token, claimed_at, claimed = batch
            batch = None
            if claimed is None:
                stats.claims_given_up += 1
                continue
            if not claimed:
                stats.claims_empty += 1
                await self._idle()
                continue
            ledger.hold(claimed, token, claimed_at)
            await self.serve(claimed)
            ids = ledger.executed(claimed)
            acked, batch = await self.ack_and_claim(token, ids)
            ledger.release(token, ids)
            if ledger.count_acks(ids, acked):
                self.done.set()


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
            drain.deadline = start_clock(spec, drain.ledger)
            timed_out, livelock = await _run_workers(drain, on_progress)
        finally:
            if monitor is not None:
                usage = monitor.stop()
        if spec.timings:
            drain.stats.add_zero_pool_waits(drain.no_wait)
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
    return finished(spec, result)
