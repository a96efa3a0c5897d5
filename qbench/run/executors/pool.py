"""A FIFO pool of aiosqlite connections: one transaction per connection at a time.

Each aiosqlite connection runs its own thread. Those threads are made daemon
threads and every one is stopped when the pool closes, even when the close
is cancelled half-way (Ctrl-C): no connection thread keeps the process
alive after an interrupt.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

import aiosqlite

from qbench.run.pragmas import ConnectionSettings, configure
from qbench.run.queues.sql import run_async


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
