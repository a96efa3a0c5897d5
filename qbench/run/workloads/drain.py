"""The drain workload: a backlog enqueued before the workers start, drained until all is acknowledged."""

from __future__ import annotations

from qbench.run.database import Backlog, prepare_database
from qbench.run.executors.protocol import ProgressSink, drain_spec
from qbench.run.metrics import ResourceMonitor
from qbench.run.workloads.protocol import Bench, Driven


class DrainWorkload:
    """Closed loop: ``history_rows`` done tasks, then a backlog of ``tasks``, then the workers."""

    def prepare(self, bench: Bench) -> Backlog:
        cfg = bench.cfg
        return prepare_database(
            bench.db_path,
            bench.queue,
            bench.settings,
            history_rows=cfg.history_rows,
            tasks=cfg.tasks,
            payload=bench.payload,
            enqueue_batch=cfg.queue.enqueue_batch,
        )

    def drive(
        self,
        bench: Bench,
        backlog: Backlog,
        *,
        on_progress: ProgressSink | None = None,
        monitor: ResourceMonitor | None = None,
    ) -> Driven:
        spec = drain_spec(bench.cfg, bench.db_path, backlog.first_id)
        return Driven(bench.executor(spec, bench.queue, on_progress=on_progress, monitor=monitor))
