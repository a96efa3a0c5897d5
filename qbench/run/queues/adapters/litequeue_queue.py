"""litequeue's ``LiteQueue`` as a client-level queue (tested with litequeue 0.9 on Python 3.11,
the newest release there, and 0.14, which needs Python 3.12, on 3.12.1: the contract tests).

``pop`` marks the oldest ready message locked in one ``BEGIN IMMEDIATE``
transaction, ``done`` marks it done. A message locked for longer than
``queue.lease_s`` is put back by :meth:`LiteQueueQueue.recover` (0.14's
``retry_expired``; 0.9's ``list_locked`` and ``retry``, in one transaction), so a worker that dies
holding one does not lose it (at least once). 0.14 fences ``done`` by claim
id: an ack after the message was handed on returns False. 0.9 has no fence:
its ``done`` always takes effect.

litequeue sets ``journal_mode=WAL`` and ``synchronous=NORMAL`` itself on every
open, so ``journal.mode`` must be wal; another ``synchronous`` is set by
PRAGMA on its write connection after it opens. ``busy.timeout_ms`` is its
connections' ``timeout``. One ``LiteQueue`` per worker.
"""

from __future__ import annotations

import base64
import inspect
from importlib.metadata import version
from typing import Any, ClassVar

import litequeue

from qbench.kinds import Delivery
from qbench.run.queues.client import SYNCHRONOUS_LEVEL, Capabilities, QueueSettings, read_in_effect

# 0.14 and later: done(message_id, *, claim_id), retry_expired(threshold_seconds)
_FENCED = "claim_id" in inspect.signature(litequeue.LiteQueue.done).parameters


class LiteQueueQueue:
    capabilities: ClassVar[Capabilities] = Capabilities(
        delivery=Delivery.AT_LEAST_ONCE,
        leases=True,
        batch_put=True,
        honours={
            "journal.mode": ("wal",),
            "synchronous": None,
            "busy.timeout_ms": None,
            "queue.lease_s": None,
        },
        shared=False,
    )
    library = f"litequeue {version('litequeue')}"

    def __init__(self) -> None:
        self._queue: Any = None
        self._lease_s = 30.0

    def open(self, db_path: str, settings: QueueSettings) -> None:
        queue = litequeue.LiteQueue(db_path, timeout=settings.busy_timeout_ms / 1000.0)
        if settings.synchronous != "normal":  # litequeue sets NORMAL itself
            queue.conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS_LEVEL[settings.synchronous]}")
        self._queue, self._lease_s = queue, settings.lease_s

    @property
    def queue(self) -> Any:
        if self._queue is None:
            raise RuntimeError("the litequeue queue is not open")
        return self._queue

    def put_many(self, items: list[bytes]) -> None:
        queue = self.queue
        with queue.transaction(mode="IMMEDIATE"):
            for item in items:  # litequeue stores text
                queue.put(base64.b64encode(item).decode("ascii"))

    def get(self) -> tuple[Any, bytes] | None:
        message = self.queue.pop()
        if message is None:
            return None
        handle = (message.message_id, getattr(message, "claim_id", None))
        return handle, base64.b64decode(message.data)

    def ack(self, handle: Any) -> bool:
        message_id, claim_id = handle
        if _FENCED:
            return bool(self.queue.done(message_id, claim_id=claim_id))
        self.queue.done(message_id)
        return True  # 0.9's done is unconditional

    def recover(self) -> int:
        queue = self.queue
        if _FENCED:
            return int(queue.retry_expired(self._lease_s))
        # 0.9's retry puts a message back whatever its state: listed and put back in one
        # transaction, so no other worker's recover() can put back what was claimed since
        with queue.transaction(mode="IMMEDIATE"):
            expired = [m.message_id for m in queue.list_locked(self._lease_s)]
            for message_id in expired:
                queue.retry(message_id)
        return len(expired)

    def in_effect(self) -> dict[str, Any]:
        conn = self.queue.conn
        return read_in_effect(conn)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None
