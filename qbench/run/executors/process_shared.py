"""What the worker processes of executor=process share with the parent, in shared memory.

:class:`Shared` (every process): the first-ack total that ends every
process's drain and the busy-error total the parent's livelock watchdog
reads, one cell per process so that no lock is ever shared between processes.
:class:`Slot` (one process and the parent): for ``faults.kill``, the fence
and the per-task mirror of :class:`FencedQueue`, and the CPU and IO counters
read at the release.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.synchronize import Lock
from typing import Any

import numpy as np
import numpy.typing as npt

from qbench.run.metrics import DrainStats
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sql import Transaction


class SharedCount:
    """A count every worker process adds to: each adds to its own cell of a shared array
    and reads the sum, so no lock is shared between processes and a process killed at any
    moment can never leave one held (each cell has one writer; its threads take a local lock)."""

    def __init__(self, cells: Any, index: int, flags: Any = None, flags_lock: Lock | None = None) -> None:
        self._cells, self._index = cells, index
        self._lock = threading.Lock()
        # a client-level queue's acks are not fenced: one task may be acknowledged in two
        # processes, so a shared byte per task says whether any process counted it already
        self.flags = flags
        self._flags_lock = flags_lock

    def first_anywhere(self, index: int) -> bool:
        """Whether this is the first ack of backlog task ``index`` in any process (and mark it).

        The test and the mark are one step under a lock every process shares, taken only
        here and never while a kill may strike (an ack is in flight: the fence holds kills off).
        """
        flags = self.flags
        if flags is None:
            return True
        assert self._flags_lock is not None
        with self._flags_lock:
            if flags[index]:
                return False
            flags[index] = 1
        return True

    def add(self, n: int) -> int:
        """Add ``n``; the total so far, every process included."""
        with self._lock:
            self._cells[self._index] += n
        return self.total()

    def total(self) -> int:
        return int(sum(self._cells))


class CountedElsewhere(SharedCount):
    """The ledger's view of the first-ack total when :class:`FencedQueue` already counts it."""

    def add(self, n: int) -> int:
        return self.total()


@dataclass
class Shared:
    """What every worker process of one drain shares with the parent: one cell per process
    (respawns included) of the first-ack and busy-error totals."""

    acks: Any
    busy: Any
    # per backlog task, acknowledged in some process (client-level queues only; else None)
    first: Any = None
    first_lock: Lock | None = None

    @classmethod
    def create(cls, ctx: SpawnContext, processes: int, tasks: int = 0) -> Shared:
        """``tasks`` > 0: with a per-task first-ack flag (an unfenced client-level queue)."""
        first = ctx.RawArray("b", tasks) if tasks else None
        lock = ctx.Lock() if tasks else None
        return cls(ctx.RawArray("q", processes), ctx.RawArray("q", processes), first, lock)


@dataclass
class Mirror:
    """A worker process's per-task counts, in shared memory, so they outlive a SIGKILL.

    Times are perf_counter readings (NaN: never); the parent makes them relative.
    """

    claims: Any
    executions: Any
    acks: Any
    claimed_at: Any
    acked_at: Any

    @classmethod
    def create(cls, ctx: SpawnContext, tasks: int) -> Mirror:
        mirror = cls(
            *(ctx.RawArray("i", tasks) for _ in range(3)), *(ctx.RawArray("d", tasks) for _ in range(2))
        )
        for times in (mirror.claimed_at, mirror.acked_at):
            array(times)[:] = math.nan
        return mirror

    def stats(self, t_start: float) -> DrainStats:
        """The counts as DrainStats, times relative to ``t_start`` (no counters: they died)."""
        return DrainStats(
            claims=array(self.claims).copy(),
            executions=array(self.executions).copy(),
            acks=array(self.acks).copy(),
            e2e_s=array(self.acked_at) - t_start,
            claimed_s=array(self.claimed_at) - t_start,
        )


def array(raw: Any) -> npt.NDArray[Any]:
    """A numpy view of a shared ctypes array."""
    return np.ctypeslib.as_array(raw)


@dataclass
class Slot:
    """One worker process as it and the parent share it."""

    index: int
    workers: int
    pool_size: int
    # taken for the fence's updates, and by the parent around a kill
    lock: Lock
    # claims this process holds (claimed, not yet being acknowledged)
    holding: Any
    # ack transactions in flight
    acking: Any
    # CPU user and system seconds, IO bytes read and written at the release (-1: unknown)
    at_release: Any
    mirror: Mirror | None

    @classmethod
    def create(
        cls, ctx: SpawnContext, index: int, workers: int, pool_size: int, tasks: int, fence: bool
    ) -> Slot:
        return cls(
            index,
            workers,
            pool_size,
            ctx.Lock(),
            ctx.RawValue("i", 0),
            ctx.RawValue("i", 0),
            ctx.RawArray("d", 4),
            Mirror.create(ctx, tasks) if fence else None,
        )

    def killable(self) -> bool:
        """Holds a claimed task and is not inside an ack transaction (read under ``lock``)."""
        return bool(self.holding.value > 0 and self.acking.value == 0)


class FencedQueue:
    """The queue as a worker process of a ``faults.kill`` run sees it.

    It publishes whether the process holds a claimed task, mirrors the per-task
    counts into shared memory, and counts first acks in the shared total, both
    inside the ack's fence: the parent kills only under the slot's lock, when a
    task is held and no ack transaction is in flight, so an ack the database
    committed is always in the mirror and the total, never lost with the process.
    """

    def __init__(self, inner: QueueUnderTest, slot: Slot, first_id: int, acks: SharedCount) -> None:
        assert slot.mirror is not None
        self._inner, self._slot, self._first, self._acks = inner, slot, first_id, acks
        # what connections_owner() looks through to
        self.wrapped = inner
        mirror = slot.mirror
        self._claims, self._executions, self._acked = (
            array(mirror.claims),
            array(mirror.executions),
            array(mirror.acks),
        )
        self._claimed_at, self._acked_at = array(mirror.claimed_at), array(mirror.acked_at)
        # token -> backlog indexes of a claim held and not yet being acknowledged
        self._open: dict[int, list[int]] = {}

    def _indexes(self, ids: Sequence[int]) -> list[int]:
        n = len(self._acked)
        return [i for i in (task_id - self._first for task_id in ids) if 0 <= i < n]

    def create_schema(self) -> Transaction[None]:
        return self._inner.create_schema()

    def enqueue(
        self, ids: Sequence[int], payload: bytes, now: float, *, done: bool = False
    ) -> Transaction[int]:
        return self._inner.enqueue(ids, payload, now, done=done)

    def requeue_expired(self, now: float) -> Transaction[None]:
        return self._inner.requeue_expired(now)

    def count_by_state(self) -> Transaction[dict[str, int]]:
        return self._inner.count_by_state()

    def claim(self, token: int, now: float) -> Transaction[list[Claimed]]:
        return self._claim(token, self._inner.claim(token, now))

    def ack(self, token: int, ids: Sequence[int], now: float) -> Transaction[list[int]]:
        return self._ack(token, self._inner.ack(token, ids, now))

    def _claim(self, token: int, tx: Transaction[list[Claimed]]) -> Transaction[list[Claimed]]:
        claimed = yield from tx
        if claimed:
            now, n, indexes = time.perf_counter(), len(self._claims), []
            for task in claimed:
                index = task.id - self._first
                if 0 <= index < n:
                    if self._claims[index] == 0:
                        self._claimed_at[index] = now
                    self._claims[index] = max(int(self._claims[index]) + 1, task.attempts)
                    indexes.append(index)
            with self._slot.lock:
                self._open[token] = indexes
                self._slot.holding.value += 1
        return claimed

    def _ack(self, token: int, tx: Transaction[list[int]]) -> Transaction[list[int]]:
        slot = self._slot
        with slot.lock:
            slot.acking.value += 1
            executed = self._open.pop(token, None)
            if executed is not None:
                slot.holding.value -= 1
        try:
            for index in executed or ():
                self._executions[index] += 1
            acked = yield from tx
            now, first = time.perf_counter(), 0
            for index in self._indexes(acked):
                self._acked[index] += 1
                if self._acked[index] == 1:
                    self._acked_at[index] = now
                    first += self._acks.first_anywhere(index)
            if first:
                self._acks.add(first)
            return acked
        finally:
            with slot.lock:
                slot.acking.value -= 1
