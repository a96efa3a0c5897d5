"""The settings tree: frozen dataclasses with enum-typed fields, each bound beside its field."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qbench.kinds import (
    Arrivals,
    BusyPolicy,
    Delivery,
    ExecutorKind,
    HostLock,
    JournalMode,
    MetricsLevel,
    PoolKind,
    QueueKind,
    ServiceDist,
    ServiceKind,
    Synchronous,
    TxMode,
    WorkloadKind,
)

_MAX_INT32 = 2**31 - 1


def integer(default: int, low: int, high: int = _MAX_INT32) -> Any:
    """A field holding an integer in ``[low, high]``."""
    return field(default=default, metadata={"low": low, "high": high})


def number(default: float, low: float, *, inclusive: bool, high: float = math.inf) -> Any:
    """A field holding a finite number above ``low`` (or at it, when ``inclusive``) and <= ``high``."""
    return field(default=default, metadata={"low": low, "high": high, "inclusive": inclusive})


# the most tasks one iteration may hold (also the bound of `tasks`)
MAX_TASKS = 100_000_000


@dataclass(frozen=True)
class WorkloadConfig:
    # shape of the load: drain (a pre-filled backlog), steady (open loop), burst (steady plus bursts)
    kind: WorkloadKind = WorkloadKind.DRAIN
    # tasks/s offered by the producer; steady and burst
    rate: float = number(1000.0, 0.0, inclusive=False, high=1_000_000)
    # how arrivals are spaced: poisson (exponential gaps) or uniform; steady and burst
    arrivals: Arrivals = Arrivals.POISSON
    # measured seconds of arrivals per iteration; steady and burst
    duration_s: float = number(5.0, 0.0, inclusive=False, high=86_400)
    # tasks/s offered during a burst, instead of rate; burst only
    burst_rate: float = number(5000.0, 0.0, inclusive=False, high=1_000_000)
    # seconds from the start of one burst to the start of the next; burst only
    burst_every_s: float = number(2.0, 0.0, inclusive=False, high=86_400)
    # seconds each burst lasts (< burst_every_s); burst only
    burst_s: float = number(0.5, 0.0, inclusive=False, high=86_400)


@dataclass(frozen=True)
class JournalConfig:
    # journal mode: wal, delete, truncate, persist
    mode: JournalMode = JournalMode.WAL
    # pages; WAL only; 0 disables automatic checkpoints
    wal_autocheckpoint_pages: int = integer(1000, 0)


@dataclass(frozen=True)
class PoolConfig:
    # per_worker (one connection each), ratio (ceil(workers * ratio)), fixed (size), shared (one)
    kind: PoolKind = PoolKind.PER_WORKER
    # connections; used by kind=fixed
    size: int = integer(4, 1, 10_000)
    # connections per worker, in (0, 1]; used by kind=ratio
    ratio: float = number(0.5, 0.0, inclusive=False, high=1.0)


@dataclass(frozen=True)
class ExecutorConfig:
    # async: coroutines in one process; thread: OS threads, each transaction on a plain
    # sqlite3 connection of the pool; process: OS processes, each running its share as coroutines
    kind: ExecutorKind = ExecutorKind.ASYNC
    # worker processes for kind=process, workers spread evenly (conf/executor/process.yaml: one per worker)
    processes: int = integer(1, 1, 1024)


@dataclass(frozen=True)
class QueueConfig:
    # the queue under test: sqlite (qbench's reference queue), huey, litequeue, persist_queue, custom
    kind: QueueKind = QueueKind.SQLITE
    # queue=custom: the class to load, package.module:ClassName
    target: str | None = None
    # what the queue promises when a worker dies holding a task: at_least_once or at_most_once
    # (declared by each queue's config; loss is a finding, not a failure, only under at_most_once)
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    # seconds a claim stays leased before another worker may claim it again
    lease_s: float = number(30.0, 0.0, inclusive=False)
    # tasks per enqueue transaction
    enqueue_batch: int = integer(500, 1, 100_000)
    # milliseconds an idle worker waits before claiming again
    poll_interval_ms: float = number(2.0, 0.0, inclusive=False, high=60_000)


@dataclass(frozen=True)
class BusyConfig:
    # native (PRAGMA busy_timeout) or app (busy_timeout 0 + retries with backoff)
    policy: BusyPolicy = BusyPolicy.NATIVE
    # milliseconds; PRAGMA busy_timeout for policy=native (app always uses 0)
    timeout_ms: int = integer(5000, 0)
    # retries of one transaction before it is given up (a given-up ack is redelivered)
    max_retries: int = integer(1000, 0)
    # milliseconds; first backoff of policy=app, doubled per retry
    backoff_base_ms: float = number(1.0, 0.0, inclusive=False)
    # milliseconds; largest backoff of policy=app
    backoff_cap_ms: float = number(50.0, 0.0, inclusive=False)


@dataclass(frozen=True)
class ClaimConfig:
    # transaction mode of the claim (and of the ack): immediate, deferred, autocommit
    tx: TxMode = TxMode.AUTOCOMMIT
    # tasks claimed per claim; a claimed batch is acknowledged in one statement
    batch: int = integer(1, 1, 10_000)


@dataclass(frozen=True)
class ServiceConfig:
    # what a task does: noop, sleep (awaited), cpu (busy work)
    kind: ServiceKind = ServiceKind.NOOP
    # milliseconds per task for sleep and cpu: the median of dist
    ms: float = number(0.0, 0.0, inclusive=True, high=3_600_000)
    # how service times vary: fixed, exponential or lognormal (median ms), drawn from `seed`
    dist: ServiceDist = ServiceDist.FIXED
    # shape of the lognormal distribution (the standard deviation of its log)
    sigma: float = number(0.5, 0.0, inclusive=True, high=10.0)


@dataclass(frozen=True)
class FaultsConfig:
    # worker processes killed (SIGKILL, mid-task) and respawned per iteration; executor=process only
    kill: int = integer(0, 0, 10_000)


@dataclass(frozen=True)
class DbConfig:
    # directory of the database file; null = the job's own output directory
    dir: str | None = None
    # keep the last iteration's database file after the job
    keep: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    # full, or minimal (counts and duration only)
    level: MetricsLevel = MetricsLevel.FULL
    # milliseconds between samples of RSS and WAL size
    sample_interval_ms: int = integer(100, 10)


@dataclass(frozen=True)
class CeilingConfig:
    # measure the single-connection sqlite3 ceiling for this job
    enabled: bool = True
    # tasks in the ceiling run; 0 = the same as `tasks`
    tasks: int = integer(0, 0)


@dataclass(frozen=True)
class Config:
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    # consumer loops: coroutines (async), OS threads (thread), spread over worker processes (process)
    workers: int = integer(1, 1, 10_000)
    # tasks in the backlog of each iteration (workload=drain; steady and burst use rate x duration_s)
    tasks: int = integer(1000, 1, MAX_TASKS)
    # measured iterations
    iterations: int = integer(10, 1, 100_000)
    # warmup iterations, written with phase=warmup and excluded from statistics
    warmup: int = integer(2, 0, 100_000)
    # PRAGMA synchronous: off, normal, full, extra (the journal option sets its natural default)
    synchronous: Synchronous = Synchronous.NORMAL
    # bytes of payload per task
    payload_bytes: int = integer(128, 0, 1_000_000_000)
    # completed tasks already in the table before the backlog is enqueued
    history_rows: int = integer(10000, 0, 1_000_000_000)
    # seconds an iteration may take before it is failed
    iteration_timeout_s: float = number(600.0, 0.0, inclusive=False)
    # seconds with no new ack while busy errors keep growing: the iteration fails as a livelock; 0 disables
    watchdog_s: float = number(10.0, 0.0, inclusive=True, high=86_400)
    # seed of every random choice: arrival times, service times, kill moments
    seed: int = integer(0, 0)
    # the host guard: wait for (or, with fail, refuse) another job's measured work on this host; off: none
    host_lock: HostLock = HostLock.WAIT
    busy: BusyConfig = field(default_factory=BusyConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    db: DbConfig = field(default_factory=DbConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)
