"""The validated configuration: frozen dataclasses with enum-typed fields.

This is what every module below the entry point receives. The Hydra schema
that ``conf/`` composes over is derived from these classes by
:mod:`qbench.app.schema` (closed sets become ``str`` there, because YAML 1.1
reads ``off``/``on``/``yes``/``no`` as booleans), and :func:`validate` turns
a composed config into this one: every value checked once, every closed set
an enum member (``synchronous: off`` means OFF).

Each field's comment gives its unit and meaning; it is also the column's
documentation in the README. Bounds live beside the field (:func:`integer`,
:func:`number`), so the check and the declaration cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from qbench.errors import ConfigError
from qbench.kinds import (
    BusyPolicy,
    ExecutorKind,
    JournalMode,
    MetricsLevel,
    PoolKind,
    QueueKind,
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


@dataclass(frozen=True)
class WorkloadConfig:
    # shape of the load: drain (a pre-filled backlog)
    kind: WorkloadKind = WorkloadKind.DRAIN


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
    # sqlite3 connection of the pool (a process executor will join this set)
    kind: ExecutorKind = ExecutorKind.ASYNC


@dataclass(frozen=True)
class QueueConfig:
    # the queue under test: sqlite (qbench's reference queue)
    kind: QueueKind = QueueKind.SQLITE
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
    # milliseconds per task for sleep and cpu
    ms: float = number(0.0, 0.0, inclusive=True, high=3_600_000)


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
    # consumer loops (coroutines for executor=async)
    workers: int = integer(1, 1, 10_000)
    # tasks in the backlog of each iteration
    tasks: int = integer(1000, 1, 100_000_000)
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
    busy: BusyConfig = field(default_factory=BusyConfig)
    claim: ClaimConfig = field(default_factory=ClaimConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    db: DbConfig = field(default_factory=DbConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    ceiling: CeilingConfig = field(default_factory=CeilingConfig)


# ---------------------------------------------------------------- building and validation

E = TypeVar("E", bound=StrEnum)
D = TypeVar("D")

# YAML 1.1 booleans arrive as "True"/"False" once OmegaConf stores them in a str field.
_YAML_FALSE = {"false", "off", "no"}


def from_mapping(cls: type[D], values: Mapping[str, Any], prefix: str = "") -> D:
    """Build ``cls`` (a settings dataclass) from nested mappings, values not yet validated.

    Raises:
        ConfigError: a key that the schema does not have.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"{prefix}{key}", value, "unknown key (python -m qbench --cfg job lists every key)"
            )
        nested = hints[key]
        if dataclasses.is_dataclass(nested) and isinstance(value, Mapping):
            kwargs[key] = from_mapping(nested, value, f"{prefix}{key}.")  # type: ignore[arg-type]
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _enum(key: str, value: object, enum: type[E], *, yaml_false: E | None = None) -> E:
    """The member named ``value``, exactly: the names are lower case, as the config groups' files.

    ``yaml_false`` is the member YAML 1.1 turns into a boolean false (``synchronous: off``,
    ``OFF``, ``no``), so any spelling of it means that member.
    """
    text = str(value)
    folded = text.strip().lower()
    if yaml_false is not None and (value is False or folded in _YAML_FALSE):
        return yaml_false
    try:
        return enum(text)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        if folded in {member.value for member in enum}:
            allowed += " (in lower case)"
        elif folded == "true":
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


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected true or false")
    return value


def _db_dir(key: str, value: object) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    path = Path(str(value)).expanduser()
    if not path.is_dir():
        raise ConfigError(key, value, "expected an existing directory")
    try:
        # os.access() says yes to root everywhere; only creating a file tells the truth.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        raise ConfigError(key, value, "expected a directory this user can write to") from None
    return str(path.resolve())


# Values that need more than their type and bounds.
_SPECIAL: dict[str, Callable[[str, object], object]] = {
    "db.dir": _db_dir,
    "synchronous": lambda key, value: _enum(key, value, Synchronous, yaml_false=Synchronous.OFF),
}


def _check(key: str, kind: Any, value: object, meta: Mapping[str, Any]) -> object:
    if key in _SPECIAL:
        return _SPECIAL[key](key, value)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _enum(key, value, kind)
    if kind is bool:
        return _bool(key, value)
    if kind is int:
        return _int(key, value, meta.get("low", 0), meta.get("high", _MAX_INT32))
    if kind is float:
        return _number(
            key,
            value,
            meta.get("low", -math.inf),
            inclusive=meta.get("inclusive", True),
            high=meta.get("high", math.inf),
        )
    raise ConfigError(key, value, f"no validation rule for a field of type {kind}")


def _validated(node: D, prefix: str) -> D:
    hints = typing.get_type_hints(type(node))
    changes: dict[str, object] = {}
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        key, value = f"{prefix}{f.name}", getattr(node, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            changes[f.name] = _validated(value, f"{key}.")
        else:
            changes[f.name] = _check(key, hints[f.name], value, f.metadata)
    return dataclasses.replace(node, **changes)  # type: ignore[type-var]


def validate(cfg: Config) -> Config:
    """Check every value once and return the config with enum members in place.

    Raises:
        ConfigError: naming the first key whose value is not allowed.
    """
    checked = _validated(cfg, "")
    busy = checked.busy
    if busy.backoff_cap_ms < busy.backoff_base_ms:
        raise ConfigError(
            "busy.backoff_cap_ms",
            cfg.busy.backoff_cap_ms,
            "expected a number >= busy.backoff_base_ms",
        )
    return checked


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
    return 0 if cfg.busy.policy is BusyPolicy.APP else cfg.busy.timeout_ms


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
