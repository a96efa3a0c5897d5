"""huey's ``SqliteStorage`` as a client-level queue (tested with huey 3.5.4).

huey's consumer shares one storage (one connection, behind a lock) between
its worker threads, and its ``dequeue`` selects and deletes the next task in
one ``BEGIN EXCLUSIVE`` transaction: a task leaves the table when it is handed
out, so a worker that dies while it runs one loses it (at most once), and
there is nothing to acknowledge.

Settings, through huey's own options: ``journal.mode`` (``journal_mode``),
``busy.timeout_ms`` (``timeout``, in seconds), ``synchronous`` off and full
(``fsync``); normal and extra, which ``fsync`` cannot express, are set by PRAGMA
on huey's own connection when it opens.
"""

from __future__ import annotations

from typing import Any, ClassVar

import huey
from huey.storage import SqliteStorage

from qbench.kinds import Delivery
from qbench.run.queues.client import SYNCHRONOUS_LEVEL, Capabilities, QueueSettings, read_in_effect


class HueyQueue:
    capabilities: ClassVar[Capabilities] = Capabilities(
        delivery=Delivery.AT_MOST_ONCE,
        leases=False,
        batch_put=False,
        honours={"journal.mode": None, "synchronous": None, "busy.timeout_ms": None},
        shared=True,
    )
    library = f"huey {huey.__version__}"

    def __init__(self) -> None:
        self._storage: SqliteStorage | None = None

    def open(self, db_path: str, settings: QueueSettings) -> None:
        fsync = {"off": False, "full": True}.get(settings.synchronous)
        storage = SqliteStorage(
            name="qbench",
            filename=db_path,
            journal_mode=settings.journal_mode,
            fsync=fsync,
            timeout=settings.busy_timeout_ms / 1000.0,
        )
        if fsync is None:  # normal or extra: on huey's own connection, before any task
            with storage.lock:
                storage.conn.execute(f"pragma synchronous={SYNCHRONOUS_LEVEL[settings.synchronous]}")
        self._storage = storage

    @property
    def storage(self) -> SqliteStorage:
        if self._storage is None:
            raise RuntimeError("the huey queue is not open")
        return self._storage

    def put_many(self, items: list[bytes]) -> None:
        enqueue = self.storage.enqueue
        for item in items:  # huey enqueues one task per transaction
            enqueue(item)

    def get(self) -> tuple[Any, bytes] | None:
        data = self.storage.dequeue()
        return None if data is None else (None, bytes(data))

    def ack(self, handle: Any) -> bool:
        return True  # the task left the queue when it was dequeued

    def in_effect(self) -> dict[str, Any]:
        storage = self.storage
        with storage.lock:
            conn = storage.conn
            return read_in_effect(conn)

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()
            self._storage = None
