"""The open-loop workloads: tasks arrive on a schedule, whatever the workers do.

``steady`` offers ``workload.rate`` tasks/s for ``workload.duration_s``
seconds (``workload.arrivals=poisson|uniform``); ``burst`` adds bursts at
``workload.burst_rate`` (:mod:`qbench.run.workloads.arrivals`). Every
iteration of a job replays the same schedule (drawn from ``seed``).

``prepare`` builds the database with its history rows and no backlog; the
measured tasks are the schedule's, from ``first_id`` on. ``drive`` starts the
producer process (:mod:`qbench.run.workloads.producer`), runs the executor
over ``len(schedule)`` tasks (they are waited for until they arrive) with the
producer released by the executor's start hook, and turns the times into the
open-loop record (:mod:`qbench.run.workloads.open_loop`), latency counted
from each task's intended arrival.
"""

from __future__ import annotations

import dataclasses
import functools

from qbench.run.database import Backlog, prepare_database
from qbench.run.executors.protocol import ProgressSink, drain_spec
from qbench.run.metrics import ResourceMonitor
from qbench.run.workloads.arrivals import (
    ArrivalParams,
    Schedule,
    arrival_params,
    arrival_schedule,
    burst_windows,
    mean_rate,
)
from qbench.run.workloads.open_loop import open_loop
from qbench.run.workloads.producer import Producer, ProducerOrders
from qbench.run.workloads.protocol import Bench, Driven

# seconds the producer may take to report once the executor saw every task acknowledged
_REPORT_TIMEOUT_S = 30.0


@functools.lru_cache(maxsize=1)
def _schedule(params: ArrivalParams) -> Schedule:
    """The job's schedule, drawn once: every prepare and drive of its iterations replays it."""
    schedule = arrival_schedule(params)
    schedule.flags.writeable = False
    return schedule


class SteadyWorkload:
    """Open loop at ``workload.rate`` (``burst``: plus bursts): a producer process enqueues on schedule."""

    def prepare(self, bench: Bench) -> Backlog:
        cfg = bench.cfg
        arrivals = len(_schedule(arrival_params(cfg)))
        backlog = prepare_database(
            bench.db_path,
            bench.queue,
            bench.settings,
            history_rows=cfg.history_rows,
            tasks=0,
            payload=bench.payload,
            enqueue_batch=cfg.queue.enqueue_batch,
        )
        # nothing is enqueued before the clock: the tasks are the schedule's arrivals
        return dataclasses.replace(backlog, tasks=arrivals, enqueue_s=0.0)

    def drive(
        self,
        bench: Bench,
        backlog: Backlog,
        *,
        on_progress: ProgressSink | None = None,
        monitor: ResourceMonitor | None = None,
    ) -> Driven:
        cfg = bench.cfg
        params = arrival_params(cfg)
        schedule = _schedule(params)
        orders = ProducerOrders(
            db_path=bench.db_path,
            settings=bench.settings,
            queue=bench.queue,
            first_id=backlog.first_id,
            payload=bench.payload,
            batch_max=cfg.queue.enqueue_batch,
        )
        with Producer(orders, schedule) as producer:
            producer.start()
            spec = dataclasses.replace(
                drain_spec(cfg, bench.db_path, backlog.first_id),
                tasks=len(schedule),
                on_start=producer.release,
            )
            drain = bench.executor(spec, bench.queue, on_progress=on_progress, monitor=monitor)
            made = producer.result(_REPORT_TIMEOUT_S)
        record = open_loop(
            drain,
            t0=made.t0,
            intended_s=schedule,
            enqueued_s=made.enqueued_s,
            offered_rate_tps=mean_rate(params),
            duration_s=params.duration_s,
            bursts=burst_windows(params),
            busy_retries=made.busy_retries,
            transactions=made.transactions,
        )
        return Driven(drain, record)


class BurstWorkload(SteadyWorkload):
    """The steady base load plus a burst at ``burst_rate`` for ``burst_s`` every ``burst_every_s``."""


__all__ = ["BurstWorkload", "SteadyWorkload"]
