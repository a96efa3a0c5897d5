"""qbench's reference SQLite queue: leases, lease-fenced acks, at-least-once redelivery."""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import IntEnum

from qbench.kinds import TxMode
from qbench.run.queues.protocol import Claimed
from qbench.run.queues.sql import Statement, Transaction, TxPhase, query
from qbench.settings import Config


class TaskState(IntEnum):
    READY = 0
    LEASED = 1
    DONE = 2


class SqliteQueue:
    """The reference queue.

    Args:
        tx_mode: how claims and acks run: one autocommit ``UPDATE ... RETURNING``,
            or ``BEGIN IMMEDIATE``/``BEGIN`` + SELECT + UPDATE + COMMIT.
        batch: tasks leased per claim.
        lease_s: seconds a lease lasts before the task may be claimed again.
    """

    def __init__(self, tx_mode: TxMode, batch: int, lease_s: float) -> None:
        self.tx_mode = TxMode(tx_mode)
        self.batch = batch
        self.lease_s = lease_s
        # Looked up once: claims and acks run these per transaction.
        self._begin_immediate = query("begin_immediate")
        self._begin = self._begin_immediate if self.tx_mode is TxMode.IMMEDIATE else query("begin_deferred")
        self._commit = query("commit")
        self._claim_returning = query("claim_returning")
        self._select_ready = query("select_ready")
        self._lease_ids = query("lease_ids")
        self._ack_ids = query("ack_ids")

    @classmethod
    def from_config(cls, cfg: Config) -> SqliteQueue:
        """The queue a validated config asks for (its entry in the queue registry)."""
        return cls(cfg.claim.tx, cfg.claim.batch, cfg.queue.lease_s)

    def create_schema(self) -> Transaction[None]:
        yield Statement(TxPhase.SETUP, query("create_tasks"))
        yield Statement(TxPhase.SETUP, query("create_ready_index"))
        yield Statement(TxPhase.SETUP, query("create_lease_index"))

    def enqueue(
        self, ids: Sequence[int], payload: bytes, now: float, *, done: bool = False
    ) -> Transaction[int]:
        state = TaskState.DONE if done else TaskState.READY
        rows = [(i, int(state), payload, now, int(done), now if done else None) for i in ids]
        yield Statement(TxPhase.BEGIN, self._begin_immediate, takes_write_lock=True)
        yield Statement(TxPhase.SETUP, query("insert_task"), rows, many=True)
        yield Statement(TxPhase.COMMIT, self._commit)
        return len(rows)

    def claim(self, token: int, now: float) -> Transaction[list[Claimed]]:
        params: dict[str, object] = {"token": token, "expires_at": now + self.lease_s, "batch": self.batch}
        if self.tx_mode is TxMode.AUTOCOMMIT:
            # One statement: it takes the write lock before it reads, so it waits in the
            # busy handler instead of failing with BUSY_SNAPSHOT.
            rows = yield Statement(TxPhase.CLAIM, self._claim_returning, params, takes_write_lock=True)
            return [Claimed(*row) for row in rows]
        yield Statement(TxPhase.BEGIN, self._begin, takes_write_lock=self.tx_mode is TxMode.IMMEDIATE)
        ready = yield Statement(TxPhase.CLAIM, self._select_ready, {"batch": self.batch})
        if not ready:
            yield Statement(TxPhase.COMMIT, self._commit)
            return []
        params["ids"] = json.dumps([row[0] for row in ready])
        # In a deferred transaction this is where the write lock is asked for.
        rows = yield Statement(
            TxPhase.CLAIM,
            self._lease_ids,
            params,
            takes_write_lock=self.tx_mode is TxMode.DEFERRED,
        )
        yield Statement(TxPhase.COMMIT, self._commit)
        return [Claimed(*row) for row in rows]

    def ack(self, token: int, ids: Sequence[int], now: float) -> Transaction[list[int]]:
        params = {"token": token, "ids": json.dumps(list(ids)), "now": now}
        if self.tx_mode is TxMode.AUTOCOMMIT:
            rows = yield Statement(TxPhase.ACK, self._ack_ids, params, takes_write_lock=True)
            return [row[0] for row in rows]
        immediate = self.tx_mode is TxMode.IMMEDIATE
        yield Statement(TxPhase.BEGIN, self._begin, takes_write_lock=immediate)
        rows = yield Statement(TxPhase.ACK, self._ack_ids, params, takes_write_lock=not immediate)
        yield Statement(TxPhase.COMMIT, self._commit)
        return [row[0] for row in rows]

    def requeue_expired(self, now: float) -> Transaction[None]:
        yield Statement(TxPhase.CLAIM, query("requeue_expired"), {"now": now}, takes_write_lock=True)

    def count_by_state(self) -> Transaction[dict[str, int]]:
        rows = yield Statement(TxPhase.SETUP, query("count_by_state"))
        counts = {state.name.lower(): 0 for state in TaskState}
        for state, count in rows:
            counts[TaskState(state).name.lower()] = count
        return counts
