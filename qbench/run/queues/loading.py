"""Which queue a job runs, found and checked before anything runs.

``queue=sqlite`` is qbench's reference queue (statement level). ``huey``,
``litequeue`` and ``persist_queue`` are client-level adapters
(:mod:`qbench.run.queues.adapters`), installed with ``pip install
'qbench[queues]'``. ``queue=custom queue.target=package.module:ClassName`` is
the user's own class, through either protocol: statement level
(:class:`~qbench.run.queues.protocol.QueueUnderTest`, built with
``from_config(cfg)`` when the class has it, else with no arguments; a class
attribute ``delivery`` declares at_most_once, at_least_once by default) or client
level (:class:`~qbench.run.queues.client.ClientQueue`).

:func:`check_queue` is preflight's: every way a queue cannot run the config is
one :class:`ConfigError` naming the key, the value and what is allowed, before
any job starts.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qbench.errors import ConfigError
from qbench.kinds import BusyPolicy, Delivery, ExecutorKind, QueueKind, WorkloadKind
from qbench.run.queues.bridge import ClientSource
from qbench.run.queues.client import (
    CLIENT_METHODS,
    QUEUE_KEYS,
    STATEMENT_METHODS,
    Capabilities,
    QueueSettings,
)
from qbench.run.queues.protocol import QueueUnderTest
from qbench.run.queues.sqlite_queue import SqliteQueue
from qbench.settings import Config, effective_busy_timeout_ms, flatten

# queue kind -> (its adapter, the library it needs)
ADAPTERS: dict[QueueKind, tuple[str, str]] = {
    QueueKind.HUEY: ("qbench.run.queues.adapters.huey_queue:HueyQueue", "huey"),
    QueueKind.LITEQUEUE: ("qbench.run.queues.adapters.litequeue_queue:LiteQueueQueue", "litequeue"),
    QueueKind.PERSIST_QUEUE: (
        "qbench.run.queues.adapters.persist_queue_queue:PersistQueueQueue",
        "persistqueue",
    ),
}
EXTRA = "pip install 'qbench[queues]'"


@dataclass(frozen=True)
class Resolved:
    """The queue a config names: a statement-level class, or a client-level source."""

    # the statement-level queue, or None for a client-level one
    statement: type | None
    client: ClientSource | None
    # "huey 3.5.4", or the custom class's own ``library`` attribute, or its target
    library: str


def _import(key: str, value: str, target: str, library: str | None) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if library is not None and exc.name is not None and exc.name.split(".")[0] == library:
            raise ConfigError(key, value, f"needs the {library} library: {EXTRA}") from None
        raise ConfigError(key, value, f"module {module_name} does not import: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(key, value, f"module {module_name} does not import: {text}") from None
    if not hasattr(module, attr):
        raise ConfigError(key, value, f"module {module_name} has no {attr}")
    return getattr(module, attr)


def _missing(cls: type, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not callable(getattr(cls, name, None))]


def resolve(cfg: Config) -> Resolved:
    """The queue ``cfg.queue`` names, imported and checked against its protocol.

    Raises:
        ConfigError: the library is not installed (naming the extra), the target does not
            import, is not a class, or lacks what either protocol needs (naming what).
    """
    kind = cfg.queue.kind
    if kind is QueueKind.SQLITE:
        return Resolved(SqliteQueue, None, "qbench reference queue")
    if kind is QueueKind.CUSTOM:
        key, target, library = "queue.target", str(cfg.queue.target), None
    else:
        key, (target, library) = "queue", ADAPTERS[kind]
    value = target if kind is QueueKind.CUSTOM else str(kind)
    cls = _import(key, value, target, library)
    if not inspect.isclass(cls):
        raise ConfigError(key, value, f"expected a class, found {type(cls).__name__}")
    missing_client = _missing(cls, CLIENT_METHODS)
    caps = getattr(cls, "capabilities", None)
    if not missing_client and not isinstance(caps, Capabilities):
        missing_client.append("capabilities (a qbench.run.queues.client.Capabilities)")
    label = str(getattr(cls, "library", "") or (target if kind is QueueKind.CUSTOM else kind))
    if not missing_client:
        name = str(kind) if kind is not QueueKind.CUSTOM else target
        return Resolved(None, ClientSource(name, target, queue_settings(cfg)), label)
    missing_statement = _missing(cls, STATEMENT_METHODS)
    if not missing_statement:
        return Resolved(cls, None, label)
    raise ConfigError(
        key,
        value,
        f"{cls.__name__} has neither protocol: the client level lacks {', '.join(missing_client)};"
        f" the statement level lacks {', '.join(missing_statement)}",
    )


def queue_settings(cfg: Config) -> QueueSettings:
    """What a client-level queue's ``open`` is given."""
    return QueueSettings(
        journal_mode=str(cfg.journal.mode),
        synchronous=str(cfg.synchronous),
        busy_timeout_ms=effective_busy_timeout_ms(cfg),
        wal_autocheckpoint_pages=cfg.journal.wal_autocheckpoint_pages,
        lease_s=cfg.queue.lease_s,
        extra=flatten(cfg),
    )


def _value(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return str(node) if isinstance(node, StrEnum) else node


def check_client(cfg: Config, caps: Capabilities, name: str) -> None:
    """Refuse what a client-level queue cannot run: one line naming the key and the queue.

    Raises:
        ConfigError: executor=async, an open-loop workload, a setting it does not honour,
            or a delivery other than the one it declares.
    """
    queue = f"queue={name}"
    if cfg.executor.kind is ExecutorKind.ASYNC:
        raise ConfigError(
            "executor",
            str(cfg.executor.kind),
            f"{queue} is a client-level queue whose calls block: use executor=thread or executor=process",
        )
    if cfg.workload.kind is not WorkloadKind.DRAIN:
        raise ConfigError(
            "workload",
            str(cfg.workload.kind),
            f"{queue} runs with workload=drain: the steady and burst producers enqueue"
            " through qbench's reference statements",
        )
    if caps.delivery is not cfg.queue.delivery:
        raise ConfigError(
            "queue.delivery",
            str(cfg.queue.delivery),
            f"{queue} declares {caps.delivery} (the config group {queue} sets it; with queue.kind,"
            f" set queue.delivery={caps.delivery} too)",
        )
    defaults = Config()
    honoured = ", ".join(caps.honours) or "none of qbench's queue settings"
    for key in QUEUE_KEYS:
        value = _value(cfg, key)
        if key in caps.honours:
            allowed = caps.honours[key]
            if allowed is not None and str(value) not in allowed:
                raise ConfigError(key, value, f"{queue} runs only with {key}={'|'.join(allowed)}")
            continue
        if key == "queue.lease_s" and caps.leases:
            continue
        if value != _value(defaults, key):
            raise ConfigError(key, value, f"{queue} does not honour {key} (it honours: {honoured})")
    if cfg.busy.policy is BusyPolicy.APP and "busy.timeout_ms" not in caps.honours:
        raise ConfigError(
            "busy.policy", "app", f"{queue} cannot set its busy timeout to 0, which busy.policy=app needs"
        )


def check_queue(cfg: Config) -> Resolved:
    """Preflight: the queue resolves and can run this config.

    Raises:
        ConfigError: naming the key, the value and what is allowed.
    """
    resolved = resolve(cfg)
    if resolved.statement is not None:
        declared = Delivery(getattr(resolved.statement, "delivery", Delivery.AT_LEAST_ONCE))
        if declared is not cfg.queue.delivery:
            name = str(cfg.queue.kind) if cfg.queue.kind is not QueueKind.CUSTOM else str(cfg.queue.target)
            raise ConfigError("queue.delivery", str(cfg.queue.delivery), f"queue={name} declares {declared}")
    if resolved.client is not None:
        caps: Capabilities = resolved.client.load().capabilities
        check_client(cfg, caps, resolved.client.name)
    return resolved


def statement_queue(cfg: Config, resolved: Resolved) -> QueueUnderTest:
    """The statement-level queue of the job: the user's class, or the reference queue (the
    ceiling's queue for a client-level one)."""
    cls = resolved.statement
    if cls is None or cls is SqliteQueue:
        return SqliteQueue.from_config(cfg)
    from_config = getattr(cls, "from_config", None)
    queue: QueueUnderTest = from_config(cfg) if callable(from_config) else cls()
    return queue


__all__ = [
    "ADAPTERS",
    "EXTRA",
    "Resolved",
    "check_client",
    "check_queue",
    "queue_settings",
    "resolve",
    "statement_queue",
]
