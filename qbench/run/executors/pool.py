"""A FIFO pool of aiosqlite connections: one transaction per connection at a time, and
:func:`on_thread`, which runs a whole transaction on a connection's own thread in one call.

Each aiosqlite connection runs its own thread. Those threads are made daemon
threads and every one is stopped when the pool closes, even when the close
is cancelled half-way (Ctrl-C): no connection thread keeps the process
alive after an interrupt.

Why one call per transaction: every aiosqlite await is a round trip to the
connection's thread (~100 µs on a 2-core machine, against ~1 µs for a plain
sqlite3 call), so a claim run statement by statement costs as many round trips
as it has statements. aiosqlite has no public API to run a function on its
thread; :func:`on_thread` uses its private ``Connection._execute(fn, *args)``
(the path every public method takes), in this one place only. The aiosqlite
version range is pinned in pyproject.toml and ``tests/test_fast_paths.py`` fails
loudly if that method changes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import aiosqlite

from qbench.run.pragmas import ConnectionSettings, configure
from qbench.run.queues.sql import run_async

T = TypeVar("T")


def on_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> Coroutine[Any, Any, T]:
    """``fn(the plain sqlite3 connection)`` run on ``conn``'s own thread: one round trip, awaited
    (aiosqlite's own coroutine, returned as it is: no wrapper coroutine per call).

    ``fn`` runs to its end even when the awaiting task is cancelled (as any aiosqlite call
    does); later calls on the connection queue behind it, so the connection is never used
    by two threads at once. Its exception is raised here.

    Raises:
        ValueError: the connection is closed.
    """
    # aiosqlite private API (pinned in pyproject.toml, checked by tests/test_fast_paths.py)
    return cast("Coroutine[Any, Any, T]", conn._execute(fn, conn._conn))  # type: ignore[no-untyped-call]


class ConnectionPool:
    """Connections handed out first come, first served."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self._all = list(connections)
        self._free: deque[aiosqlite.Connection] = deque(connections)
        self._waiters: deque[asyncio.Future[aiosqlite.Connection]] = deque()

    @classmethod
    async def open(cls, db_path: str, size: int, settings: ConnectionSettings) -> ConnectionPool:
        """Open ``size`` connections, each with every PRAGMA set and read back."""
        connections: list[aiosqlite.Connection] = []
        try:
            for _ in range(size):
                # isolation_level=None: qbench issues BEGIN/COMMIT itself; timeout is
                # set by PRAGMA busy_timeout in configure().
                pending = aiosqlite.connect(db_path, isolation_level=None)
                _daemon(pending)
                conn = await pending
                connections.append(conn)
                await run_async(conn, configure(settings))
        except BaseException:
            await _close_all(connections)
            raise
        return cls(connections)

    def __len__(self) -> int:
        return len(self._all)

    def acquire_now(self) -> aiosqlite.Connection | None:
        """A free connection at once (no await), or None: then wait in :meth:`acquire`."""
        return self._free.popleft() if self._free else None

    async def acquire(self) -> aiosqlite.Connection:
        if self._free:
            return self._free.popleft()
        waiter: asyncio.Future[aiosqlite.Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def release(self, conn: aiosqlite.Connection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._free.append(conn)

    async def close(self) -> None:
        """Close every connection (statements in flight finish first); each thread ends."""
        await _close_all(self._all)


def _daemon(conn: aiosqlite.Connection) -> None:
    """Make the connection's thread, not yet started, a daemon thread."""
    thread = conn if isinstance(conn, threading.Thread) else getattr(conn, "_thread", None)
    if isinstance(thread, threading.Thread) and not thread.is_alive():
        thread.daemon = True


async def _close_all(connections: list[aiosqlite.Connection]) -> None:
    """Close each connection in turn (its statement in flight finishes first).

    Cancelled or failing half-way, it still closes the others and waits for them, so
    no connection thread is left to report to an event loop that is gone.
    """
    for index, conn in enumerate(connections):
        try:
            await conn.close()
        except BaseException:
            await asyncio.gather(*(rest.close() for rest in connections[index + 1 :]), return_exceptions=True)
            raise
