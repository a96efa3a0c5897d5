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

from qbench.errors import DrainTimeoutError, LivelockError
from qbench.kinds import BusyPolicy, ServiceKind
from qbench.run.executors.interrupts import Interrupts, run_interruptibly
from qbench.run.executors.pool import ConnectionPool
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProgressSink
from qbench.run.metrics import DrainStats, ResourceMonitor, ResourceUsage
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sql import BusyError, Transaction, query, run_async

T = TypeVar("T")


class _Drain:
    def __init__(self, spec: DrainSpec, queue: QueueUnderTest, pool: ConnectionPool) -> None:
        self.spec = spec
        self.queue = queue
        self.pool = pool
        self.stats = DrainStats.for_tasks(spec.tasks)
        self.acked_unique = 0
        self.done = asyncio.Event()
        self.t_start = 0.0
        self.t_last_ack = 0.0
        # perf_counter time at which the iteration times out: cpu service stops there
        self.deadline = math.inf
        # the task running the drain: cancelled on Ctrl-C (see qbench.run.executors.interrupts)
        self.main: asyncio.Task[Any] | None = None
        self.next_requeue_at = 0.0
        self._tokens = itertools.count(1)
        self._rng = random.Random(0x9B)
        self._timings = spec.timings
        self._first, self._n = spec.first_id, spec.tasks
        # per backlog task: (lease token, wall-clock expiry) of the claim in flight
        self._holder: list[tuple[int, float] | None] = [None] * spec.tasks

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
            cap = min(self.spec.backoff_cap_s, self.spec.backoff_base_s * 2 ** min(attempt - 1, 30))
            await asyncio.sleep(self._rng.uniform(0.0, cap))
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

    async def worker(self) -> None:
        """Claim, serve, acknowledge, until every backlog task is acknowledged.

        The hot loop: every await here is a transaction or a task's service, and
        the bookkeeping steps are plain calls, once per claim.
        """
        stats, timings = self.stats, self._timings
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
            self._hold(claimed, token, claimed_at)
            # noop: nothing to serve, no coroutine, no timing (service latency stays null)
            if not noop:
                for task in claimed:
                    if timings:
                        served = time.perf_counter()
                        await self._serve(task)
                        stats.service_s.append(time.perf_counter() - served)
                    else:
                        await self._serve(task)
            ids = self._executed(claimed)
            acked = await self.transact(self.queue.ack, token, ids)
            self._release(token, ids)
            self._count_acks(ids, acked)

    def _hold(self, claimed: list[Claimed], token: int, claimed_at: float) -> None:
        """Count the claims of backlog tasks and note who holds each lease, until when."""
        stats, holder, first, n = self.stats, self._holder, self._first, self._n
        received = time.time()
        expires_at = claimed_at + self.spec.lease_s
        for task in claimed:
            index = task.id - first
            if 0 <= index < n:
                # attempts > our own claims: a consumer outside this drain held it before
                stats.claims[index] = max(stats.claims[index] + 1, task.attempts)
                held = holder[index]
                # Claimed again while another worker's lease is still running: the queue
                # handed one task to two workers at once. (10 ms of slack for clock reads.)
                if held is not None and received < held[1] - 0.01:
                    stats.double_handed += 1
                holder[index] = (token, expires_at)

    def _executed(self, claimed: list[Claimed]) -> list[int]:
        """Count the served tasks' executions; their ids, to acknowledge."""
        executions, first, n = self.stats.executions, self._first, self._n
        ids = []
        for task in claimed:
            index = task.id - first
            if 0 <= index < n:
                executions[index] += 1
            ids.append(task.id)
        return ids

    def _release(self, token: int, ids: list[int]) -> None:
        """This claim is over, acknowledged or not: its leases are no longer held."""
        holder, first, n = self._holder, self._first, self._n
        for task_id in ids:
            index = task_id - first
            if 0 <= index < n and (held := holder[index]) is not None and held[0] == token:
                holder[index] = None

    def _count_acks(self, ids: list[int], acked: list[int] | None) -> None:
        """Count the acknowledgements (None: given up); set ``done`` once every task has one."""
        stats, first, n = self.stats, self._first, self._n
        if acked is None:
            stats.acks_given_up += len(ids)
            return
        stats.acks_rejected += len(ids) - len(acked)
        now = time.perf_counter()
        for task_id in acked:
            index = task_id - first
            if not 0 <= index < n:
                stats.acks_unknown += 1
                continue
            stats.acks[index] += 1
            if stats.acks[index] == 1:
                self.acked_unique += 1
                stats.e2e_s[index] = now - self.t_start
                self.t_last_ack = now
        if self.acked_unique >= n:
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
) -> DrainResult:
    interrupts.attach()
    pool = await ConnectionPool.open(str(spec.db_path), spec.pool_size, spec.settings)
    usage: ResourceUsage | None = None
    try:
        drain = _Drain(spec, queue, pool)
        drain.main = interrupts.main
        if monitor is not None:
            monitor.start()
        try:
            drain.t_start = time.perf_counter()
            drain.deadline = drain.t_start + spec.timeout_s
            timed_out, livelock = await _run_workers(drain, on_progress)
        finally:
            if monitor is not None:
                usage = monitor.stop()
        end = drain.t_last_ack if drain.acked_unique else time.perf_counter()
        return DrainResult(drain.stats, end - drain.t_start, len(pool), timed_out, usage, livelock)
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
    """Wake about once a second; return once no task got its first ack for ``window_s``
    seconds while the busy errors grew at every wake-up.

    A wake-up with no new busy error, with a new first ack, or one that came late
    (the event loop was held, e.g. by cpu service, so nothing can be judged) starts
    the window again.
    """
    stats = drain.stats
    tick = min(1.0, max(0.05, window_s / 4))
    last = since = time.perf_counter()
    acked = drain.acked_unique
    busy_since = busy_last = stats.busy_total
    while True:
        await asyncio.sleep(tick)
        now, busy = time.perf_counter(), stats.busy_total
        late = now - last > 2 * tick + 0.1
        if late or busy == busy_last or drain.acked_unique != acked:
            since, acked, busy_since = now, drain.acked_unique, busy
        elif now - since >= window_s:
            return _livelock(drain, now - since, busy - busy_since)
        last, busy_last = now, busy


def _livelock(drain: _Drain, window_s: float, busy: int) -> LivelockError:
    spec = drain.spec
    return LivelockError(
        f"livelock: 0 acks in {window_s:.1f} s, {busy:,} busy retries"
        f" ({drain.acked_unique} of {spec.tasks} tasks acknowledged; the workers keep colliding"
        f" and none gets through; watchdog_s={spec.watchdog_s:g})",
        acked=drain.acked_unique,
        tasks=spec.tasks,
        window_s=window_s,
        busy=busy,
    )


async def _report(drain: _Drain, on_progress: ProgressSink) -> None:
    while True:
        await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - drain.t_start
        on_progress(drain.acked_unique, drain.acked_unique / elapsed if elapsed > 0 else 0.0)


def run_drain(
    spec: DrainSpec,
    queue: QueueUnderTest,
    *,
    on_progress: ProgressSink | None = None,
    monitor: ResourceMonitor | None = None,
) -> DrainResult:
    """Drain the backlog already in ``spec.db_path``; every connection is closed on return.

    Raises:
        DrainTimeoutError: the backlog was not drained within ``spec.timeout_s``.
        LivelockError: no task got its first ack for ``spec.watchdog_s`` while busy errors grew.
        KeyboardInterrupt: Ctrl-C (or a handled SIGTERM): raised once every connection is closed
            (:mod:`qbench.run.executors.interrupts`).
    """
    result = run_interruptibly(lambda interrupts: _drain(spec, queue, on_progress, monitor, interrupts))
    if result.livelock is not None:
        raise result.livelock
    if result.timed_out:
        hint = ""
        if result.stats.acks_rejected:
            hint = (
                f"; {result.stats.acks_rejected} acks came after their lease expired:"
                " queue.lease_s may be shorter than a claimed batch takes to serve"
            )
        raise DrainTimeoutError(
            f"the backlog was not drained within iteration_timeout_s={spec.timeout_s:g}: "
            f"{sum(1 for a in result.stats.acks if a)} of {spec.tasks} tasks acknowledged{hint}"
        )
    return result
