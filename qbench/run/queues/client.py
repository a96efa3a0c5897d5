"""The client-level protocol: a queue library that owns its connections and its SQL.

qbench drives such a queue through its own API, never its statements. A
class implements :class:`ClientQueue` (a no-argument constructor, then
``open``) and declares its :class:`Capabilities`. These names are a public,
stable interface: users write their adapters against them.

- ``open(db_path, settings)``: open or create the queue on that file.
  ``settings`` (:class:`QueueSettings`) carries what qbench was asked for;
  apply what the class declares it honours (at creation when the library
  takes it only then).
- ``put_many(items)``: enqueue these items (bytes), in one call.
- ``get()``: ``(handle, item)`` of one task now claimed, or ``None`` when
  nothing is ready. The handle is whatever ``ack`` needs.
- ``ack(handle)``: acknowledge; whether the ack took effect (False: the claim
  was no longer this worker's, e.g. its lease expired and it was handed on).
- ``close()``: release every connection.

Optional methods a class may add (qbench calls them when present):

- ``recover()``: put claims older than ``settings.lease_s`` back (for
  ``Capabilities.leases``); returns how many. Idle workers call it now and then.
- ``in_effect()``: what the library really runs with, read from its own
  connection: ``{"journal_mode": "wal", "synchronous": 1, "busy_timeout_ms": 5000}``
  (any subset). Recorded beside what was asked for.

Everything a class needs is importable from this module:
``from qbench.run.queues.client import Capabilities, Delivery, QueueSettings``.

A busy or locked database surfaces as the library's ``sqlite3.OperationalError``:
qbench counts it as a busy error of the claim or the ack and retries the call
under the busy policy, as it does its own statements.

Every item qbench enqueues starts with the task's id (:func:`encode_item`),
so the audit counts claims, executions and acks per task from the workers'
side, whatever the library does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from qbench.kinds import Delivery

# the settings a client-level queue may honour, as qbench spells their keys
QUEUE_KEYS = (
    "journal.mode",
    "synchronous",
    "journal.wal_autocheckpoint_pages",
    "busy.timeout_ms",
    "queue.lease_s",
    "claim.tx",
    "claim.batch",
    "pool.kind",
)

_ID_BYTES = 8
# PRAGMA synchronous levels by name, as SQLite reads them back
SYNCHRONOUS_LEVEL = {"off": 0, "normal": 1, "full": 2, "extra": 3}


@dataclass(frozen=True)
class QueueSettings:
    """What qbench was asked for, as a client-level queue's ``open`` receives it."""

    # wal, delete, truncate or persist
    journal_mode: str
    # off, normal, full or extra
    synchronous: str
    # milliseconds SQLite waits for a lock before SQLITE_BUSY (0 under busy.policy=app)
    busy_timeout_ms: int
    # pages between automatic WAL checkpoints
    wal_autocheckpoint_pages: int
    # seconds a claim stays the worker's before recover() may hand it on
    lease_s: float
    # anything else: the whole config as flat columns (``claim_tx``, ``workers``, ...)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a client-level queue promises and which of qbench's settings it applies.

    ``honours`` maps each key of :data:`QUEUE_KEYS` the queue applies to the values it
    accepts (None: any). A key it does not list must stay at qbench's default; any
    other value is refused before a job runs, naming the key and the queue.
    """

    # at_least_once: a claimed task that is never acknowledged comes back;
    # at_most_once: a task leaves the queue when it is handed out
    delivery: Delivery
    # a claim not acknowledged within queue.lease_s comes back through recover()
    leases: bool = False
    # put_many enqueues in one transaction (False: the class loops over its own put)
    batch_put: bool = False
    honours: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    # one open queue per process, shared by its worker threads (the library's own
    # thread-safe use); False: one open queue per worker
    shared: bool = False


@runtime_checkable
class ClientQueue(Protocol):
    capabilities: ClassVar[Capabilities]

    def open(self, db_path: str, settings: QueueSettings) -> None: ...

    def put_many(self, items: list[bytes]) -> None: ...

    def get(self) -> tuple[Any, bytes] | None: ...

    def ack(self, handle: Any) -> bool: ...

    def close(self) -> None: ...


# the methods each protocol needs, for the one-line message naming what a class lacks
CLIENT_METHODS = ("open", "put_many", "get", "ack", "close")
STATEMENT_METHODS = ("create_schema", "enqueue", "claim", "ack", "requeue_expired", "count_by_state")


def read_in_effect(conn: Any) -> dict[str, Any]:
    """What a sqlite3 connection runs with, for ``in_effect()``: journal mode, synchronous level
    and busy timeout, read back with PRAGMAs."""
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
        "busy_timeout_ms": conn.execute("PRAGMA busy_timeout").fetchone()[0],
    }


def encode_item(task_id: int, payload: bytes) -> bytes:
    """The item qbench enqueues for a task: its id (8 bytes, big-endian), then the payload."""
    return task_id.to_bytes(_ID_BYTES, "big") + payload


def decode_id(item: bytes) -> int:
    """The task id an item carries.

    Raises:
        ValueError: the item is too short to carry one (the queue changed what it was given).
    """
    if len(item) < _ID_BYTES:
        raise ValueError(f"a queue returned an item of {len(item)} bytes: qbench's items carry an 8-byte id")
    return int.from_bytes(item[:_ID_BYTES], "big")


__all__ = [
    "CLIENT_METHODS",
    "QUEUE_KEYS",
    "STATEMENT_METHODS",
    "SYNCHRONOUS_LEVEL",
    "Capabilities",
    "ClientQueue",
    "Delivery",
    "QueueSettings",
    "decode_id",
    "encode_item",
    "read_in_effect",
]
