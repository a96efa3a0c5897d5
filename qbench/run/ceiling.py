"""The ceiling: what SQLite itself does with the workers' statements.

The same claim and ack transactions (same mode, same batch) run in a tight
single-connection loop on plain ``sqlite3``, against a database prepared
with the same settings on the same file system. Throughput divided by this
is the harness efficiency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from qbench.errors import CeilingError
from qbench.run.database import connect, prepare_database, remove_database
from qbench.run.pragmas import ConnectionSettings
from qbench.run.queues.protocol import QueueUnderTest
from qbench.run.queues.sql import run_sync


@dataclass(frozen=True)
class Ceiling:
    tasks: int
    # tasks per second claimed and acknowledged by the single-connection loop
    tps: float
    # microseconds per task enqueued (batched)
    enqueue_us: float
    # microseconds per claim transaction
    claim_us: float
    # microseconds per ack transaction
    ack_us: float


def measure_ceiling(
    db_path: Path,
    queue: QueueUnderTest,
    settings: ConnectionSettings,
    *,
    tasks: int,
    history_rows: int,
    payload: bytes,
    enqueue_batch: int,
) -> Ceiling:
    """Prepare a backlog of ``tasks`` and drain it in a tight loop on one connection.

    Raises:
        CeilingError: the loop did not acknowledge every task.
    """
    backlog = prepare_database(
        db_path,
        queue,
        settings,
        history_rows=history_rows,
        tasks=tasks,
        payload=payload,
        enqueue_batch=enqueue_batch,
    )
    conn = connect(db_path, settings)
    claim_s = ack_s = 0.0
    claims = acks = done = 0
    token = 0
    try:
        perf = time.perf_counter
        started = perf()
        while True:
            token += 1
            t0 = perf()
            claimed = run_sync(conn, queue.claim(token, time.time()))
            t1 = perf()
            claim_s += t1 - t0
            claims += 1
            if not claimed:
                break
            acked = run_sync(conn, queue.ack(token, [task.id for task in claimed], time.time()))
            ack_s += perf() - t1
            acks += 1
            done += len(acked)
        elapsed = perf() - started
    finally:
        conn.close()
        remove_database(db_path)
    if done != tasks:
        raise CeilingError(f"ceiling loop acknowledged {done} of {tasks} tasks")
    return Ceiling(
        tasks=tasks,
        tps=done / elapsed,
        enqueue_us=backlog.enqueue_s / tasks * 1e6,
        claim_us=claim_s / claims * 1e6,
        ack_us=ack_s / max(acks, 1) * 1e6,
    )
