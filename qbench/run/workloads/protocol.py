"""What every workload offers the job: how tasks arrive, iteration by iteration.

A workload has two steps. ``prepare`` builds a fresh database for the
iteration (schema, history, whatever must be there before the clock starts)
and says where the measured tasks are; ``drive`` hands them to the executor
(and, for an open-loop workload, keeps them arriving while it runs) and
returns what the workers counted (:class:`Driven`: for an open-loop
workload, with what the producer did). Both get the job's :class:`Bench`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qbench.run.database import Backlog
from qbench.run.executors.protocol import DrainResult, Executor, ProgressSink
from qbench.run.metrics import ResourceMonitor
from qbench.run.pragmas import ConnectionSettings
from qbench.run.queues.bridge import ClientSource
from qbench.run.queues.protocol import QueueUnderTest
from qbench.run.workloads.open_loop import OpenLoop
from qbench.settings import Config


@dataclass(frozen=True)
class Bench:
    """What every iteration of a job runs against; fixed for the whole job."""

    cfg: Config
    # the iteration's database file (recreated by each prepare)
    db_path: Path
    queue: QueueUnderTest
    settings: ConnectionSettings
    executor: Executor
    # the bytes every task carries
    payload: bytes
    # a client-level queue (huey, litequeue, ...): the queue under test; ``queue`` is then the
    # reference queue its ceiling runs
    client: ClientSource | None = None
    # what the queue is, for the results: "huey 3.5.4", "qbench reference queue", a custom target
    library: str = "qbench reference queue"


@dataclass(frozen=True)
class Driven:
    """What one drive gave: the workers' counts, and for steady and burst the open-loop record."""

    drain: DrainResult
    # None for a closed-loop workload (drain)
    open_loop: OpenLoop | None = None


class Workload(Protocol):
    def prepare(self, bench: Bench) -> Backlog:
        """Create the iteration's database; set-up is timed apart from the enqueue of the tasks."""
        ...

    def drive(
        self,
        bench: Bench,
        backlog: Backlog,
        *,
        on_progress: ProgressSink | None = None,
        monitor: ResourceMonitor | None = None,
    ) -> Driven:
        """Run the executor until every task of ``backlog`` is acknowledged.

        Raises:
            DrainTimeoutError: not within ``iteration_timeout_s``.
            LivelockError: no first ack for ``watchdog_s`` seconds while busy errors kept growing.
        """
        ...
