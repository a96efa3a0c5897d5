"""An example of a home-grown SQLite queue, benchmarked by qbench through its client-level protocol.

Run it:

    python -m qbench queue=custom queue.target=examples.fifo_queue:FifoQueue executor=thread workers=4

(from the repository root, so that ``examples`` imports). A class like this one
is all qbench needs: a no-argument constructor, ``open``, ``put_many``, ``get``,
``ack``, ``close``, and its ``capabilities``. This one leases each task it hands
out: a task whose lease expired comes back through ``recover`` (at least once),
and an ack after the lease was handed on is refused (the lease token fences it).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, ClassVar

from qbench.run.queues.client import Capabilities, Delivery, QueueSettings, read_in_effect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fifo (
    id INTEGER PRIMARY KEY,
    item BLOB NOT NULL,
    lease_token INTEGER,       -- null: ready
    lease_until REAL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS fifo_ready ON fifo (done, lease_token, id);
"""


class FifoQueue:
    capabilities: ClassVar[Capabilities] = Capabilities(
        delivery=Delivery.AT_LEAST_ONCE,
        leases=True,
        batch_put=True,
        honours={
            "journal.mode": None,
            "synchronous": None,
            "busy.timeout_ms": None,
            "queue.lease_s": None,
        },
        shared=False,  # one connection per worker
    )
    library = "examples.fifo_queue"

    def __init__(self) -> None:
        self._conn: sqlite3.Connection | None = None
        self._lease_s = 30.0
        self._token = 0

    def open(self, db_path: str, settings: QueueSettings) -> None:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
        conn.execute(f"PRAGMA journal_mode = {settings.journal_mode}")
        conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
        conn.executescript(_SCHEMA)
        self._conn, self._lease_s = conn, settings.lease_s
        # lease tokens unique across every worker and process: a random start, then a counter
        self._token = int.from_bytes(os.urandom(6), "big") << 14

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the queue is not open")
        return self._conn

    def put_many(self, items: list[bytes]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO fifo (item) VALUES (?)", [(item,) for item in items])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def get(self) -> tuple[Any, bytes] | None:
        self._token += 1
        row = self.conn.execute(
            "UPDATE fifo SET lease_token = ?, lease_until = ?"
            " WHERE id = (SELECT id FROM fifo WHERE done = 0 AND lease_token IS NULL ORDER BY id LIMIT 1)"
            " RETURNING id, item",
            (self._token, time.time() + self._lease_s),
        ).fetchone()
        if row is None:
            return None
        return (row[0], self._token), row[1]

    def ack(self, handle: Any) -> bool:
        task_id, token = handle
        cursor = self.conn.execute(
            "UPDATE fifo SET done = 1, lease_token = NULL WHERE id = ? AND lease_token = ? AND done = 0",
            (task_id, token),
        )
        return cursor.rowcount == 1

    def recover(self) -> int:
        cursor = self.conn.execute(
            "UPDATE fifo SET lease_token = NULL, lease_until = NULL"
            " WHERE done = 0 AND lease_token IS NOT NULL AND lease_until < ?",
            (time.time(),),
        )
        return cursor.rowcount

    def in_effect(self) -> dict[str, Any]:
        conn = self.conn
        return read_in_effect(conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
