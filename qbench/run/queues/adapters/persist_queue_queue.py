"""persist-queue's ``SQLiteAckQueue`` as a client-level queue (tested with persist-queue 1.1.0).

``get`` selects the next ready item and marks it unacked, ``ack`` marks it
acked. Items left unacked (a worker died holding them) are made ready again
when a queue is next opened on the file (``auto_resume``), so nothing is lost
(at least once); it has no leases, so ``queue.lease_s`` does not apply, and a
queue opened while others hold items hands those out again.

One ``SQLiteAckQueue`` per process with ``multithreading=True``, shared by its
worker threads (its own lock serializes them), as its documentation has it.
persist-queue sets ``journal_mode=WAL`` itself, so ``journal.mode`` must be wal;
``synchronous`` is set by PRAGMA on its connections after they open;
``busy.timeout_ms`` is its ``timeout``. The table lives in ``db_path``
(``db_file_name`` in its parent directory).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

from persistqueue import Empty, SQLiteAckQueue

from qbench.kinds import Delivery
from qbench.run.queues.client import SYNCHRONOUS_LEVEL, Capabilities, QueueSettings, read_in_effect


class PersistQueueQueue:
    capabilities: ClassVar[Capabilities] = Capabilities(
        delivery=Delivery.AT_LEAST_ONCE,
        leases=False,
        batch_put=False,
        honours={"journal.mode": ("wal",), "synchronous": None, "busy.timeout_ms": None},
        shared=True,
    )
    library = f"persist-queue {version('persist-queue')}"

    def __init__(self) -> None:
        self._queue: SQLiteAckQueue | None = None

    def open(self, db_path: str, settings: QueueSettings) -> None:
        path = Path(db_path)
        queue = SQLiteAckQueue(
            str(path.parent),
            db_file_name=path.name,
            multithreading=True,
            timeout=settings.busy_timeout_ms / 1000.0,
            auto_resume=True,
        )
        level = SYNCHRONOUS_LEVEL[settings.synchronous]
        connections: list[Any] = [queue._getter, queue._putter]
        for conn in {id(c): c for c in connections}.values():
            conn.execute(f"PRAGMA synchronous = {level}")
        self._queue = queue

    @property
    def queue(self) -> SQLiteAckQueue:
        if self._queue is None:
            raise RuntimeError("the persist-queue queue is not open")
        return self._queue

    def put_many(self, items: list[bytes]) -> None:
        put = self.queue.put
        for item in items:  # one insert and commit per item
            put(item)

    def get(self) -> tuple[Any, bytes] | None:
        try:
            raw = self.queue.get(block=False, raw=True)
        except Empty:
            return None
        return raw["pqid"], bytes(raw["data"])

    def ack(self, handle: Any) -> bool:
        return self.queue.ack(id=handle) is not None

    def in_effect(self) -> dict[str, Any]:
        queue = self.queue
        with queue.tran_lock:
            conn: Any = queue._putter
            return read_in_effect(conn)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None
