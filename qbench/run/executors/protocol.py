"""What every executor takes and gives back, whatever runs its workers (coroutines, threads, processes).

An executor runs ``spec.workers`` consumers over the queue until each of the
``spec.tasks`` tasks from ``spec.first_id`` on is acknowledged, and returns
what they counted. It opens and closes its own connections, so nothing
outlives the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from qbench.errors import LivelockError
from qbench.kinds import BusyPolicy, Delivery, MetricsLevel, ServiceDist, ServiceKind
from qbench.run.metrics import DrainStats, ResourceMonitor, ResourceUsage
from qbench.run.pragmas import ConnectionSettings, connection_settings
from qbench.run.queues.protocol import QueueUnderTest
from qbench.settings import Config, pool_connections, worker_processes

# Called now and then with (tasks acknowledged so far, tasks per second since the start).
ProgressSink = Callable[[int, float], None]
# Called once, in the calling process, with the perf_counter time at which the workers' clock
# starts (for executor=process: when the barrier releases them). On Linux perf_counter is
# CLOCK_MONOTONIC, one clock for every process of the host.
StartHook = Callable[[float], None]


@dataclass(frozen=True)
class DrainSpec:
    db_path: Path
    settings: ConnectionSettings
    workers: int
    pool_size: int
    first_id: int
    tasks: int
    busy_policy: BusyPolicy
    max_retries: int
    backoff_base_s: float
    backoff_cap_s: float
    service_kind: ServiceKind
    service_s: float
    poll_interval_s: float
    lease_s: float
    timeout_s: float
    # per-event timings (latencies, lock and pool waits); False = counts and duration only
    timings: bool = True
    # seconds with no new first ack while busy errors keep growing: a livelock; 0 = no watchdog
    watchdog_s: float = 0.0
    # how service times vary around service_s (the median), and the seed they are drawn from
    service_dist: ServiceDist = ServiceDist.FIXED
    service_sigma: float = 0.0
    seed: int = 0
    # executor=process: worker processes (0 = one per worker) and SIGKILLs per drain
    processes: int = 0
    faults_kill: int = 0
    # lease tokens count from token_base + 1: each worker process gets its own range, so no
    # process can acknowledge another's lease
    token_base: int = 0
    # called with the clock's start (open-loop producers start there); never sent to a child process
    on_start: StartHook | None = None
    # a client-level queue reports no attempt count, so each worker process counts only its own
    # claims and the processes' counts are summed (the reference queue's are the largest)
    claims_summed: bool = False
    # at_most_once delivery: a task a killed process held is lost, not redelivered, so it is
    # settled at the kill (the drain does not wait for it)
    loss_on_kill: bool = False


@dataclass(frozen=True)
class ProcessUsage:
    """One worker process of executor=process, over its measured run."""

    index: int
    pid: int
    workers: int
    cpu_user_s: float
    cpu_sys_s: float
    # the process's own high-water mark (VmHWM on Linux): exact, not sampled
    rss_peak_bytes: int
    # False: killed by faults.kill (its counters died with it; its leased tasks came back)
    completed: bool = True


@dataclass
class DrainResult:
    stats: DrainStats
    # seconds from the workers' start to the last first-ack of a backlog task
    duration_s: float
    pool_connections: int
    timed_out: bool
    # CPU, IO, RSS and WAL over the workers' run only (not pool opening or closing)
    usage: ResourceUsage | None = None
    # the watchdog stopped the drain: no first ack for watchdog_s while busy errors grew
    livelock: LivelockError | None = None
    # perf_counter time at which the workers' clock started: stats' per-task times count from here
    t_start: float = 0.0
    # executor=process: every worker process, killed ones included
    processes: list[ProcessUsage] = field(default_factory=list)
    # worker processes killed by faults.kill
    faults_injected: int = 0


class Executor(Protocol):
    def __call__(
        self,
        spec: DrainSpec,
        queue: QueueUnderTest,
        *,
        on_progress: ProgressSink | None = None,
        monitor: ResourceMonitor | None = None,
    ) -> DrainResult:
        """Drain the tasks ``spec`` names; every connection is closed on return.

        Raises:
            DrainTimeoutError: the tasks were not all acknowledged within ``spec.timeout_s``.
            LivelockError: no task got its first ack for ``spec.watchdog_s`` seconds while
                the busy errors kept growing (0 disables the watchdog).
        """
        ...


def drain_spec(cfg: Config, db_path: Path, first_id: int, *, client: bool = False) -> DrainSpec:
    """The executor's orders for a backlog of ``cfg.tasks`` tasks from ``first_id`` in ``db_path``
    (``client``: the queue is a client-level one)."""
    return DrainSpec(
        db_path=db_path,
        settings=connection_settings(cfg),
        workers=cfg.workers,
        pool_size=pool_connections(cfg),
        first_id=first_id,
        tasks=cfg.tasks,
        busy_policy=cfg.busy.policy,
        max_retries=cfg.busy.max_retries,
        backoff_base_s=cfg.busy.backoff_base_ms / 1000.0,
        backoff_cap_s=cfg.busy.backoff_cap_ms / 1000.0,
        service_kind=cfg.service.kind,
        service_s=cfg.service.ms / 1000.0,
        poll_interval_s=cfg.queue.poll_interval_ms / 1000.0,
        lease_s=cfg.queue.lease_s,
        timeout_s=cfg.iteration_timeout_s,
        timings=cfg.metrics.level is MetricsLevel.FULL,
        watchdog_s=cfg.watchdog_s,
        service_dist=cfg.service.dist,
        service_sigma=cfg.service.sigma,
        seed=cfg.seed,
        processes=worker_processes(cfg),
        faults_kill=cfg.faults.kill,
        claims_summed=client,
        loss_on_kill=cfg.queue.delivery is Delivery.AT_MOST_ONCE,
    )
