"""How the thread executor's workers get a connection for a transaction."""

from __future__ import annotations

import queue as queues
import sqlite3


class Own:
    """A connection one thread owns: lending it costs nothing."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def acquire(self) -> sqlite3.Connection:
        return self.conn

    def acquire_now(self) -> sqlite3.Connection | None:
        return self.conn

    def release(self, conn: sqlite3.Connection) -> None:
        pass


class Shared:
    """Connections lent first come, first served, one transaction at a time (thread-safe)."""

    def __init__(self, connections: list[sqlite3.Connection]) -> None:
        self._free: queues.Queue[sqlite3.Connection] = queues.Queue()
        for conn in connections:
            self._free.put(conn)

    def acquire(self) -> sqlite3.Connection:
        return self._free.get()

    def acquire_now(self) -> sqlite3.Connection | None:
        """A free connection at once, or None (the caller then waits in :meth:`acquire`)."""
        try:
            return self._free.get_nowait()
        except queues.Empty:
            return None

    def release(self, conn: sqlite3.Connection) -> None:
        self._free.put(conn)
