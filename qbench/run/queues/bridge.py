"""A client-level queue as the executors drive it.

The executors run a queue's claims and acks as transaction generators on a
connection they own (:mod:`qbench.run.queues.sql`). A client-level queue owns
its connections, so :class:`ClientBridge` presents it in that shape with
generators that run no statement: each claim is one ``get()`` and each ack one
``ack(handle)``, called when the executor runs the "transaction", on the
worker's own thread. The connection the executor passes is never touched; it
opens none (:class:`~qbench.run.queues.protocol.OwnsConnections`): the bridge
opens the queue itself before the clock starts, once per worker or once per
process when the queue's threads share it.

A busy or locked database raised by the library becomes a
:class:`~qbench.run.queues.sql.BusyError` of the claim or the ack, so it is
counted and retried under the busy policy like any other.
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from qbench.errors import MeasurementError
from qbench.run.queues.client import Capabilities, ClientQueue, QueueSettings, decode_id, encode_item
from qbench.run.queues.protocol import Claimed
from qbench.run.queues.sql import BusyError, Transaction, TxPhase, busy_code

T = TypeVar("T")


class QueueOpenError(MeasurementError):
    """A client-level queue failed to open (before the clock): its set-up statements failed."""


@dataclass(frozen=True)
class ClientSource:
    """Which client-level queue a job runs and what it was asked for; picklable, so each worker
    process opens its own."""

    # queue=huey, or the target of queue=custom, as the user named it
    name: str
    # package.module:ClassName
    target: str
    settings: QueueSettings

    def load(self) -> type[ClientQueue]:
        module, _, attr = self.target.partition(":")
        cls: type[ClientQueue] = getattr(importlib.import_module(module), attr)
        return cls

    def open(self, db_path: Path) -> ClientQueue:
        """The queue opened (or created) on ``db_path`` with the job's settings."""
        queue = self.load()()
        queue.open(str(db_path), self.settings)
        return queue


def call(phase: TxPhase, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a busy or locked database raised as :class:`BusyError` of ``phase``."""
    try:
        return fn(*args)
    except sqlite3.Error as exc:
        code = busy_code(exc)
        if code is None:
            raise
        raise BusyError(phase, code, exc) from exc


class _NoConnection:
    """What the executor hands a client-level queue's transactions: nothing is ever open on it."""

    in_transaction = False


NO_CONNECTION: Any = _NoConnection()


class ClientBridge:
    """A client-level queue in the executors' shape (claim, ack, requeue_expired).

    Args:
        source: the queue and its settings.
        db_path: the file it runs on.
    """

    def __init__(self, source: ClientSource, db_path: Path) -> None:
        self.source = source
        self.db_path = Path(db_path)
        self.capabilities: Capabilities = source.load().capabilities
        self._open: list[ClientQueue] = []
        self._free: list[ClientQueue] = []
        self._local = threading.local()
        # claim token -> (task id, the library's handle), until the claim is acknowledged
        self._handles: dict[int, tuple[int, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "db_path": self.db_path}  # a worker process opens its own

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], state["db_path"])  # type: ignore[misc]

    # -- OwnsConnections -------------------------------------------------------------------

    def open_for(self, workers: int) -> int:
        """Open the queue for ``workers`` worker threads: once if they share it, else once each."""
        for _ in range(1 if self.capabilities.shared else workers):
            try:
                self._open.append(self.source.open(self.db_path))
            except sqlite3.Error as exc:  # the library's own set-up statements failed
                raise QueueOpenError(f"queue={self.source.name} could not open its queue: {exc}") from exc
        self._free = list(self._open)
        return len(self._open)

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()
        self._free = []
        self._handles.clear()

    def _mine(self) -> ClientQueue:
        if self.capabilities.shared:
            return self._open[0]
        queue: ClientQueue | None = getattr(self._local, "queue", None)
        if queue is None:
            queue = self._free.pop()  # atomic under the GIL: each thread takes its own
            self._local.queue = queue
        return queue

    # -- the executors' calls --------------------------------------------------------------

    def claim(self, token: int, now: float) -> Transaction[list[Claimed]]:
        yield from ()
        got = call(TxPhase.CLAIM, self._mine().get)
        if got is None:
            return []
        handle, item = got
        task_id = decode_id(item)
        self._handles[token] = (task_id, handle)
        return [Claimed(task_id, 1, None)]

    def ack(self, token: int, ids: Sequence[int], now: float) -> Transaction[list[int]]:
        yield from ()
        held = self._handles.get(token)
        if held is None:
            return []
        task_id, handle = held
        ok = call(TxPhase.ACK, self._mine().ack, handle)
        del self._handles[token]
        return [task_id] if ok and task_id in ids else []

    def requeue_expired(self, now: float) -> Transaction[None]:
        yield from ()
        recover = getattr(self._mine(), "recover", None)
        if self.capabilities.leases and recover is not None:
            call(TxPhase.CLAIM, recover)

    def create_schema(self) -> Transaction[None]:
        raise TypeError("a client-level queue creates its own tables when it is opened")

    def enqueue(
        self, ids: Sequence[int], payload: bytes, now: float, *, done: bool = False
    ) -> Transaction[int]:
        raise TypeError("a client-level queue is filled through put_many (qbench.run.database)")

    def count_by_state(self) -> Transaction[dict[str, int]]:
        raise TypeError("a client-level queue's tables are its own: qbench does not read them")


def put_tasks(queue: ClientQueue, ids: range, payload: bytes) -> None:
    """Enqueue the tasks ``ids`` in one ``put_many``, each item carrying its id."""
    call(TxPhase.SETUP, queue.put_many, [encode_item(task_id, payload) for task_id in ids])


__all__ = ["NO_CONNECTION", "ClientBridge", "ClientSource", "call", "put_tasks"]
