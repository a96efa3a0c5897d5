"""What a queue under test offers the harness: the statement-level protocol.

A public, stable interface: ``queue=custom queue.target=package.module:ClassName`` loads a
user's class that implements :class:`QueueUnderTest` (or the client-level protocol of
:mod:`qbench.run.queues.client`). The method names, arguments and return values below do
not change without a major version.

Each method returns a transaction generator (see :mod:`qbench.run.queues.sql`),
so the same queue code runs under the plain sqlite3 driver (ceiling, set-up)
and the aiosqlite driver (workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from qbench.run.queues.sql import Transaction


class Claimed(NamedTuple):
    id: int
    # claims of this task so far, this one included; > 1 means redelivered
    attempts: int
    payload: bytes | None


class QueueUnderTest(Protocol):
    def create_schema(self) -> Transaction[None]:
        """Create the tables and indexes (idempotent)."""
        ...

    def enqueue(
        self, ids: Sequence[int], payload: bytes, now: float, *, done: bool = False
    ) -> Transaction[int]:
        """Insert tasks with the given ids in one transaction; ``done`` writes completed history."""
        ...

    def claim(self, token: int, now: float) -> Transaction[list[Claimed]]:
        """Lease up to the batch size of ready tasks under ``token``."""
        ...

    def ack(self, token: int, ids: Sequence[int], now: float) -> Transaction[list[int]]:
        """Mark leased tasks done; returns the ids whose lease ``token`` still held."""
        ...

    def requeue_expired(self, now: float) -> Transaction[None]:
        """Make tasks whose lease expired claimable again."""
        ...

    def count_by_state(self) -> Transaction[dict[str, int]]:
        """Rows per state (ready, leased, done)."""
        ...


@runtime_checkable
class OwnsConnections(Protocol):
    """A queue that opens its own connections (a client-level queue): the executor opens none,
    hands its transactions a connection they never use, and calls these around the drain."""

    def open_for(self, workers: int) -> int:
        """Open what ``workers`` worker threads of this process need; how many queues were opened."""
        ...

    def close_all(self) -> None: ...


def connections_owner(queue: Any) -> OwnsConnections | None:
    """The part of ``queue`` that opens its own connections (under any wrapper), or None."""
    inner = getattr(queue, "wrapped", queue)
    return inner if isinstance(inner, OwnsConnections) else None
