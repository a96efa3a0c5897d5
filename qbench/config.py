"""The typed configuration schema, its closed sets, and validation.

The dataclasses below are registered in Hydra's ConfigStore as the schema
that ``conf/`` composes over, and they are what every module below the entry
point receives: frozen, validated once by :func:`validate`.

Closed sets are ``StrEnum`` s. In the schema their fields are typed ``str``
because YAML 1.1 (and so OmegaConf) reads ``off``/``on``/``yes``/``no`` as
booleans; :func:`validate` maps those back (``synchronous: off`` means OFF)
and replaces every string with its enum member, which is still a ``str``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from qbench.errors import ConfigError


class WorkloadKind(StrEnum):
    DRAIN = "drain"  # a pre-filled backlog drained by the workers


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


class QueueKind(StrEnum):
    SQLITE = "sqlite"


class ServiceKind(StrEnum):
    NOOP = "noop"
    SLEEP = "sleep"  # awaited asyncio.sleep
    CPU = "cpu"  # busy work that holds the event loop


class MetricsLevel(StrEnum):
    FULL = "full"
    MINIMAL = "minimal"  # counts and duration only: the yardstick for measurement overhead


class Phase(StrEnum):
    WARMUP = "warmup"
    MEASURE = "measure"


@dataclass(frozen=True)
class WorkloadConfig:
    # shape of the load: drain (a pre-filled backlog)
    kind: str = "drain"


@dataclass(frozen=True)
class JournalConfig:
    # journal mode: wal, delete, truncate, persist
    mode: str = "wal"
    # pages; WAL only; 0 disables automatic checkpoints
    wal_autocheckpoint_pages: int = 1000


@dataclass(frozen=True)
class PoolConfig:
    # per_worker (one connection each), ratio (ceil(workers * ratio)), fixed (size), shared (one)
    kind: str = "per_worker"
    # connections; used by kind=fixed
    size: int = 4
    # connections per worker, in (0, 1]; used by kind=ratio
    ratio: float = 0.5


@dataclass(frozen=True)
class ExecutorConfig:
    # async: coroutines in one process (a process executor will join this set)
    kind: str = "async"


@dataclass(frozen=True)
class QueueConfig:
    # the queue under test: sqlite (qbench's reference queue)
    kind: str = "sqlite"
    # seconds a claim stays leased before another worker may claim it again
    lease_s: float = 30.0
    # tasks per enqueue transaction
    enqueue_batch: int = 500
    # milliseconds an idle worker waits before claiming again
    poll_interval_ms: float = 2.0


@dataclass(frozen=True)
class BusyConfig:
    # native (PRAGMA busy_timeout) or app (busy_timeout 0 + retries with backoff)
    policy: str = "native"
    # milliseconds; PRAGMA busy_timeout for policy=native (app always uses 0)
    timeout_ms: int = 5000
    # retries of one transaction before it is given up (a given-up ack is redelivered)
    max_retries: int = 1000
    # milliseconds; first backoff of policy=app, doubled per retry
    backoff_base_ms: float = 1.0
    # milliseconds; largest backoff of policy=app
    backoff_cap_ms: float = 50.0


@dataclass(frozen=True)
class ClaimConfig:
    # transaction mode of the claim (and of the ack): immediate, deferred, autocommit
    tx: str = "autocommit"
    # tasks claimed per claim; a claimed batch is acknowledged in one statement
    batch: int = 1


@dataclass(frozen=True)
class ServiceConfig:
    # what a task does: noop, sleep (awaited), cpu (busy work)
    kind: str = "noop"
    # milliseconds per task for sleep and cpu
    ms: float = 0.0


@dataclass(frozen=True)
class DbConfig:
    # directory of the database file; null = the job's own output directory
    dir: str | None = None
    # keep the last iteration's database file after the job
    keep: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    # full, or minimal (counts and duration only)
    level: str = "full"
    # milliseconds between samples of RSS and WAL size
    sample_interval_ms: int = 100


@dataclass(frozen=True)
class CeilingConfig:
    # measure the single-connection sqlite3 ceiling for this job
    enabled: bool = True
    # tasks in the ceiling run; 0 = the same as `tasks`
    tasks: int = 0


@dataclass(frozen=True)
class Config:
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    # consumer loops (coroutines for executor=async)
    workers: int = 1
    # tasks in the backlog of each iteration
    tasks: int = 1000
    # measured iterations
    iterations: int = 10
    # warmup iterations, written with phase=warmup and excluded from statistics
    warmup: int = 2
    # PRAGMA synchronous: off, normal, full, extra (the journal option sets its natural default)
    synchronous: str = "normal"
    # bytes of payload per task
    payload_bytes: int = 128
    # completed tasks already in the table before the backlog is enqueued
    history_rows: int = 10000
    # seconds an iteration may take before it is failed
    iteration_timeout_s: float = 600.0
    busy: BusyConfig = field(default_factory=BusyConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    db: DbConfig = field(default_factory=DbConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore as ``base_config``."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import DictConfig, OmegaConf

    # The dataclasses are frozen for the code below the entry point; the schema
    # node must accept the config groups' values while Hydra composes.
    schema = OmegaConf.structured(Config)

    def unfreeze(node: DictConfig) -> None:
        node._set_flag("readonly", None)
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                unfreeze(child)

    unfreeze(schema)
    ConfigStore.instance().store(name="base_config", node=schema)


# ---------------------------------------------------------------- validation

E = TypeVar("E", bound=StrEnum)

# YAML 1.1 booleans arrive as "True"/"False" once OmegaConf stores them in a str field.
_YAML_FALSE = {"false", "off", "no"}
_MAX_INT32 = 2**31 - 1


def _enum(key: str, value: object, enum: type[E], *, yaml_false: E | None = None) -> E:
    text = str(value).strip().lower()
    if yaml_false is not None and (value is False or text in _YAML_FALSE):
        return yaml_false
    try:
        return enum(text)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        if text == "true":
            allowed += " (YAML reads on, yes and true as true)"
        raise ConfigError(key, value, f"allowed: {allowed}") from None


def _int(key: str, value: object, low: int, high: int = _MAX_INT32) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bound = f"an integer >= {low}" if high == _MAX_INT32 else f"an integer in [{low}, {high}]"
        raise ConfigError(key, value, f"expected {bound}")
    return value


def _number(key: str, value: object, low: float, *, inclusive: bool, high: float = math.inf) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        number = float(value)  # type: ignore[arg-type]
        ok = (number >= low if inclusive else number > low) and number <= high
    if not ok:
        rel = ">=" if inclusive else ">"
        bound = f"a number {rel} {low:g}" + (f" and <= {high:g}" if high != math.inf else "")
        raise ConfigError(key, value, f"expected {bound}")
    return float(value)  # type: ignore[arg-type]


def _db_dir(value: str | None) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise ConfigError("db.dir", value, "expected an existing directory")
    try:
        # os.access() says yes to root everywhere; only creating a file tells the truth.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        raise ConfigError("db.dir", value, "expected a directory this user can write to") from None
    return str(path.resolve())


def validate(cfg: Config) -> Config:
    """Check every value once and return the config with enum members in place.

    Raises:
        ConfigError: naming the first key whose value is not allowed.
    """
    r = dataclasses.replace
    workload = r(cfg.workload, kind=_enum("workload.kind", cfg.workload.kind, WorkloadKind))
    journal = r(
        cfg.journal,
        mode=_enum("journal.mode", cfg.journal.mode, JournalMode),
        wal_autocheckpoint_pages=_int(
            "journal.wal_autocheckpoint_pages", cfg.journal.wal_autocheckpoint_pages, 0
        ),
    )
    pool = r(
        cfg.pool,
        kind=_enum("pool.kind", cfg.pool.kind, PoolKind),
        size=_int("pool.size", cfg.pool.size, 1, 10_000),
        ratio=_number("pool.ratio", cfg.pool.ratio, 0.0, inclusive=False, high=1.0),
    )
    executor = r(cfg.executor, kind=_enum("executor.kind", cfg.executor.kind, ExecutorKind))
    queue = r(
        cfg.queue,
        kind=_enum("queue.kind", cfg.queue.kind, QueueKind),
        lease_s=_number("queue.lease_s", cfg.queue.lease_s, 0.0, inclusive=False),
        enqueue_batch=_int("queue.enqueue_batch", cfg.queue.enqueue_batch, 1, 100_000),
        poll_interval_ms=_number(
            "queue.poll_interval_ms", cfg.queue.poll_interval_ms, 0.0, inclusive=False, high=60_000
        ),
    )
    busy = r(
        cfg.busy,
        policy=_enum("busy.policy", cfg.busy.policy, BusyPolicy),
        timeout_ms=_int("busy.timeout_ms", cfg.busy.timeout_ms, 0),
        max_retries=_int("busy.max_retries", cfg.busy.max_retries, 0),
        backoff_base_ms=_number("busy.backoff_base_ms", cfg.busy.backoff_base_ms, 0.0, inclusive=False),
        backoff_cap_ms=_number("busy.backoff_cap_ms", cfg.busy.backoff_cap_ms, 0.0, inclusive=False),
    )
    if busy.backoff_cap_ms < busy.backoff_base_ms:
        raise ConfigError(
            "busy.backoff_cap_ms",
            cfg.busy.backoff_cap_ms,
            f">= busy.backoff_base_ms ({busy.backoff_base_ms:g})",
        )
    claim = r(
        cfg.claim,
        tx=_enum("claim.tx", cfg.claim.tx, TxMode),
        batch=_int("claim.batch", cfg.claim.batch, 1, 10_000),
    )
    service = r(
        cfg.service,
        kind=_enum("service.kind", cfg.service.kind, ServiceKind),
        ms=_number("service.ms", cfg.service.ms, 0.0, inclusive=True, high=3_600_000),
    )
    metrics = r(
        cfg.metrics,
        level=_enum("metrics.level", cfg.metrics.level, MetricsLevel),
        sample_interval_ms=_int("metrics.sample_interval_ms", cfg.metrics.sample_interval_ms, 10),
    )
    ceiling = r(cfg.ceiling, tasks=_int("ceiling.tasks", cfg.ceiling.tasks, 0))
    return r(
        cfg,
        workload=workload,
        journal=journal,
        pool=pool,
        executor=executor,
        queue=queue,
        workers=_int("workers", cfg.workers, 1, 10_000),
        tasks=_int("tasks", cfg.tasks, 1, 100_000_000),
        iterations=_int("iterations", cfg.iterations, 1, 100_000),
        warmup=_int("warmup", cfg.warmup, 0, 100_000),
        synchronous=_enum("synchronous", cfg.synchronous, Synchronous, yaml_false=Synchronous.OFF),
        payload_bytes=_int("payload_bytes", cfg.payload_bytes, 0, 1_000_000_000),
        history_rows=_int("history_rows", cfg.history_rows, 0, 1_000_000_000),
        iteration_timeout_s=_number("iteration_timeout_s", cfg.iteration_timeout_s, 0.0, inclusive=False),
        busy=busy,
        claim=claim,
        service=service,
        db=r(cfg.db, dir=_db_dir(cfg.db.dir)),
        metrics=metrics,
        ceiling=ceiling,
    )


def pool_connections(cfg: Config) -> int:
    """How many connections the pool holds for this config."""
    kind = PoolKind(cfg.pool.kind)
    if kind is PoolKind.PER_WORKER:
        return cfg.workers
    if kind is PoolKind.RATIO:
        return max(1, math.ceil(cfg.workers * cfg.pool.ratio))
    if kind is PoolKind.FIXED:
        return cfg.pool.size
    return 1


def effective_busy_timeout_ms(cfg: Config) -> int:
    """The PRAGMA busy_timeout each connection gets: the app policy waits in Python instead."""
    return 0 if BusyPolicy(cfg.busy.policy) is BusyPolicy.APP else cfg.busy.timeout_ms


def flatten(cfg: Config) -> dict[str, Any]:
    """Every config value as a flat ``section_key`` column (``busy.timeout_ms`` -> ``busy_timeout_ms``)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}_")
            else:
                out[f"{prefix}{f.name}"] = str(value) if isinstance(value, StrEnum) else value

    walk(cfg, "")
    return out
