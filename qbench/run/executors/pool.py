"""A FIFO pool of aiosqlite connections: one transaction per connection at a time."""

from __future__ import annotations

import asyncio
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
                conn = await aiosqlite.connect(db_path, isolation_level=None)
                connections.append(conn)
                await run_async(conn, configure(settings))
        except BaseException:
            for conn in connections:
                await conn.close()
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
        for conn in self._all:
            await conn.close()
