"""The drain workload: a backlog enqueued before the workers start, drained until all is acknowledged."""

from __future__ import annotations

from qbench.run.database import Backlog, prepare_client_database, prepare_database
from qbench.run.executors.protocol import ProgressSink, drain_spec
from qbench.run.metrics import ResourceMonitor
from qbench.run.queues.bridge import ClientBridge
from qbench.run.workloads.protocol import Bench, Driven


class DrainWorkload:
    """Closed loop: ``history_rows`` done tasks, then a backlog of ``tasks``, then the workers."""

    def prepare(self, bench: Bench) -> Backlog:
        cfg = bench.cfg
        if bench.client is not None:
            return prepare_client_database(
                bench.db_path,
                bench.client,
                history_rows=cfg.history_rows,
                tasks=cfg.tasks,
                payload=bench.payload,
                enqueue_batch=cfg.queue.enqueue_batch,
            )
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
        if bench.client is not None:
            spec = drain_spec(bench.cfg, bench.db_path, backlog.first_id, client=True)
            queue = ClientBridge(bench.client, bench.db_path)
            return Driven(bench.executor(spec, queue, on_progress=on_progress, monitor=monitor))
        spec = drain_spec(bench.cfg, bench.db_path, backlog.first_id)
        return Driven(bench.executor(spec, bench.queue, on_progress=on_progress, monitor=monitor))
