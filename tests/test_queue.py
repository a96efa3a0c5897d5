"""The queue contract, applied to every queue implementation and transaction mode."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbench.kinds import JournalMode, Synchronous, TxMode
from qbench.run.database import connect
from qbench.run.pragmas import ConnectionSettings
from qbench.run.queues import QueueUnderTest, SqliteQueue
from qbench.run.queues.sql import queries, run_sync

SETTINGS = ConnectionSettings(JournalMode.WAL, Synchronous.NORMAL, busy_timeout_ms=1000)


def make_queues(batch: int, lease_s: float) -> list[QueueUnderTest]:
    return [SqliteQueue(mode, batch, lease_s) for mode in TxMode]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = connect(tmp_path / "q.db", SETTINGS)
    yield c
    c.close()


class QueueContract:
    """Every queue under test must pass these, in every transaction mode."""

    @pytest.fixture(params=list(TxMode), ids=str)
    def mode(self, request: pytest.FixtureRequest) -> TxMode:
        return TxMode(request.param)

    def make(self, mode: TxMode, batch: int = 1, lease_s: float = 30.0) -> QueueUnderTest:
        raise NotImplementedError

    def setup_queue(self, conn: sqlite3.Connection, queue: QueueUnderTest, n: int) -> None:
        run_sync(conn, queue.create_schema())
        run_sync(conn, queue.enqueue(range(1, 6), b"old", time.time(), done=True))
        run_sync(conn, queue.enqueue(range(6, 6 + n), b"p", time.time()))

    def test_claims_ready_tasks_in_id_order_up_to_the_batch(
        self, conn: sqlite3.Connection, mode: TxMode
    ) -> None:
        q = self.make(mode, batch=3)
        self.setup_queue(conn, q, 5)
        first = run_sync(conn, q.claim(1, time.time()))
        second = run_sync(conn, q.claim(2, time.time()))
        third = run_sync(conn, q.claim(3, time.time()))
        assert [t.id for t in first] == [6, 7, 8]
        assert [t.id for t in second] == [9, 10]
        assert third == []
        assert all(t.attempts == 1 and t.payload == b"p" for t in first + second)

    def test_ack_marks_done_and_only_once(self, conn: sqlite3.Connection, mode: TxMode) -> None:
        q = self.make(mode, batch=2)
        self.setup_queue(conn, q, 2)
        claimed = run_sync(conn, q.claim(7, time.time()))
        assert sorted(run_sync(conn, q.ack(7, [t.id for t in claimed], time.time()))) == [6, 7]
        assert run_sync(conn, q.ack(7, [t.id for t in claimed], time.time())) == []
        assert run_sync(conn, q.count_by_state()) == {"ready": 0, "leased": 0, "done": 7}

    def test_ack_is_fenced_by_the_lease(self, conn: sqlite3.Connection, mode: TxMode) -> None:
        q = self.make(mode, batch=1, lease_s=0.01)
        self.setup_queue(conn, q, 1)
        [old] = run_sync(conn, q.claim(1, time.time()))
        time.sleep(0.02)
        run_sync(conn, q.requeue_expired(time.time()))
        [again] = run_sync(conn, q.claim(2, time.time()))
        assert again.id == old.id and again.attempts == 2
        # The first holder's lease expired and moved on: its ack must not land.
        assert run_sync(conn, q.ack(1, [old.id], time.time())) == []
        assert run_sync(conn, q.ack(2, [again.id], time.time())) == [again.id]

    def test_unexpired_leases_are_not_requeued(self, conn: sqlite3.Connection, mode: TxMode) -> None:
        q = self.make(mode, batch=1, lease_s=60)
        self.setup_queue(conn, q, 1)
        run_sync(conn, q.claim(1, time.time()))
        run_sync(conn, q.requeue_expired(time.time()))
        assert run_sync(conn, q.claim(2, time.time())) == []
        assert run_sync(conn, q.count_by_state())["leased"] == 1


class TestSqliteQueue(QueueContract):
    def make(self, mode: TxMode, batch: int = 1, lease_s: float = 30.0) -> QueueUnderTest:
        return SqliteQueue(mode, batch, lease_s)


def test_sql_is_kept_as_named_queries() -> None:
    q = queries()
    for name in ("claim_returning", "select_ready", "lease_ids", "ack_ids", "requeue_expired"):
        assert name in q and q[name].strip()
    assert "json_each(:ids)" in q["ack_ids"]


def test_claim_uses_the_ready_index(conn: sqlite3.Connection) -> None:
    q = SqliteQueue(TxMode.AUTOCOMMIT, 1, 30)
    run_sync(conn, q.create_schema())
    plan = " ".join(
        str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + queries()["select_ready"], {"batch": 1})
    )
    assert "tasks_ready" in plan
