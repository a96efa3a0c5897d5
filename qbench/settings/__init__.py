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

from qbench.settings.checks import from_mapping, validate
from qbench.settings.derived import (
    arrivals_expected,
    effective_busy_timeout_ms,
    flatten,
    pool_connections,
    worker_processes,
)
from qbench.settings.model import (
    MAX_TASKS,
    BusyConfig,
    CeilingConfig,
    ClaimConfig,
    Config,
    DbConfig,
    ExecutorConfig,
    FaultsConfig,
    JournalConfig,
    MetricsConfig,
    PoolConfig,
    QueueConfig,
    ServiceConfig,
    WorkloadConfig,
    integer,
    number,
)

__all__ = [
    "MAX_TASKS",
    "BusyConfig",
    "CeilingConfig",
    "ClaimConfig",
    "Config",
    "DbConfig",
    "ExecutorConfig",
    "FaultsConfig",
    "JournalConfig",
    "MetricsConfig",
    "PoolConfig",
    "QueueConfig",
    "ServiceConfig",
    "WorkloadConfig",
    "arrivals_expected",
    "effective_busy_timeout_ms",
    "flatten",
    "from_mapping",
    "integer",
    "number",
    "pool_connections",
    "validate",
    "worker_processes",
]
