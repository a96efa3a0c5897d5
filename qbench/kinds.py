"""The closed sets of qbench: every config choice, phase and status is one of these enums.

They sit at the bottom of the package, below the settings, the queues and the
results, so any layer may name them and none has to ask the Hydra schema.
"""

from __future__ import annotations

from enum import StrEnum


class WorkloadKind(StrEnum):
    DRAIN = "drain"  # a pre-filled backlog drained by the workers (closed loop)
    STEADY = "steady"  # open loop: tasks arrive at workload.rate whatever the workers do
    BURST = "burst"  # steady plus bursts at workload.burst_rate


class Arrivals(StrEnum):
    POISSON = "poisson"  # exponential gaps (independent arrivals)
    UNIFORM = "uniform"  # evenly spaced arrivals


class JournalMode(StrEnum):
    WAL = "wal"
    DELETE = "delete"
    TRUNCATE = "truncate"
    PERSIST = "persist"


class Synchronous(StrEnum):
    OFF = "off"
    NORMAL = "normal"
    FULL = "full"
    EXTRA = "extra"


class TxMode(StrEnum):
    IMMEDIATE = "immediate"  # BEGIN IMMEDIATE; SELECT; UPDATE; COMMIT
    DEFERRED = "deferred"  # BEGIN; SELECT; UPDATE; COMMIT (can meet BUSY_SNAPSHOT)
    AUTOCOMMIT = "autocommit"  # one UPDATE ... RETURNING statement


class BusyPolicy(StrEnum):
    NATIVE = "native"  # PRAGMA busy_timeout does the waiting
    APP = "app"  # busy_timeout 0, application retries with capped exponential backoff + jitter


class PoolKind(StrEnum):
    PER_WORKER = "per_worker"
    RATIO = "ratio"
    FIXED = "fixed"
    SHARED = "shared"


class ExecutorKind(StrEnum):
    ASYNC = "async"
    THREAD = "thread"
    PROCESS = "process"


class QueueKind(StrEnum):
    SQLITE = "sqlite"  # qbench's reference queue (statement level)
    HUEY = "huey"  # huey's SqliteStorage (client level)
    LITEQUEUE = "litequeue"  # litequeue's LiteQueue (client level)
    PERSIST_QUEUE = "persist_queue"  # persist-queue's SQLiteAckQueue (client level)
    CUSTOM = "custom"  # the user's own class, queue.target=package.module:ClassName


class Delivery(StrEnum):
    AT_LEAST_ONCE = "at_least_once"  # a claimed task not acknowledged comes back
    AT_MOST_ONCE = "at_most_once"  # a task is removed when it is handed out: a dead worker loses it


class ServiceKind(StrEnum):
    NOOP = "noop"
    SLEEP = "sleep"  # awaited asyncio.sleep
    CPU = "cpu"  # busy work that holds the event loop


class ServiceDist(StrEnum):
    FIXED = "fixed"  # every task takes service.ms
    EXPONENTIAL = "exponential"  # median service.ms
    LOGNORMAL = "lognormal"  # median service.ms, shape service.sigma


class MetricsLevel(StrEnum):
    FULL = "full"
    MINIMAL = "minimal"  # counts and duration only: the yardstick for measurement overhead


class HostLock(StrEnum):
    WAIT = "wait"  # queue behind the host's lock: measured windows on one host never overlap
    FAIL = "fail"  # the lock is held: the job fails at once, naming the holder
    OFF = "off"  # no lock: for people who know (the report flags such results)


class Phase(StrEnum):
    WARMUP = "warmup"
    MEASURE = "measure"


class JobState(StrEnum):
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
