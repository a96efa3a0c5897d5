"""What a queue under test offers the harness.

Each method returns a transaction generator (see :mod:`qbench.run.queues.sql`),
so the same queue code runs under the plain sqlite3 driver (ceiling, set-up)
and the aiosqlite driver (workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

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
