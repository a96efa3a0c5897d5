"""The ceiling: what SQLite itself does with the workers' statements.

The same claim and ack transactions (same mode, same batch) run in a tight
single-connection loop on plain ``sqlite3``, against a database prepared
with the same settings on the same file system. Throughput divided by this
is the harness efficiency.

One run of the loop is noisier than the workers' median over iterations (a
config once measured at 107% of it), so a job repeats it interleaved with its
measured iterations (:class:`CeilingRepeats`: before the first, after the last
and evenly between, at most :data:`MAX_REPEATS` times) and records the median
of the repeats and their spread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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


# Repeats of the ceiling per job: one before the first measured iteration, one after the last,
# the rest evenly between (iterations + 1 when there are fewer gaps than this).
MAX_REPEATS = 3


def repeat_positions(
    warmup: int, iterations: int, *, after_last: bool = True, repeats: int = MAX_REPEATS
) -> frozenset[int]:
    """The iteration indices a ceiling repeat runs before (``warmup + iterations``: after the last).

    The first runs after the warmup iterations, so the ceiling, like the workers, is measured warm.
    Without ``after_last`` (``db.keep``: the last iteration's database must outlive the job) none
    runs after the last iteration.
    """
    gaps = iterations if after_last else iterations - 1
    count = min(gaps + 1, repeats)
    if count <= 1:
        return frozenset({warmup})
    return frozenset(warmup + round(i * gaps / (count - 1)) for i in range(count))


@dataclass
class CeilingRepeats:
    """The ceiling repeats of one job, interleaved with its iterations; their median is its ceiling."""

    measure: Callable[[], Ceiling]
    # iteration indices a repeat runs before (warmup + iterations: after the last one)
    positions: frozenset[int]
    done: list[Ceiling] = field(default_factory=list)

    def before(self, iteration: int) -> None:
        """Measure a repeat if one is due before ``iteration`` (``warmup + iterations``: the end)."""
        if iteration in self.positions:
            self.done.append(self.measure())

    def median(self) -> Ceiling | None:
        """Each figure's median over the repeats so far (None before the first)."""
        if not self.done:
            return None
        return Ceiling(
            tasks=self.done[0].tasks,
            tps=statistics.median(c.tps for c in self.done),
            enqueue_us=statistics.median(c.enqueue_us for c in self.done),
            claim_us=statistics.median(c.claim_us for c in self.done),
            ack_us=statistics.median(c.ack_us for c in self.done),
        )

    def spread(self) -> float | None:
        """(largest - smallest) / median of the repeats' tasks/s; None with fewer than two."""
        if len(self.done) < 2:
            return None
        tps = [c.tps for c in self.done]
        return (max(tps) - min(tps)) / statistics.median(tps)
