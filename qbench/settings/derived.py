"""Values derived from a validated config."""

from __future__ import annotations

import dataclasses
import math
from enum import StrEnum
from typing import Any

from qbench.kinds import (
    BusyPolicy,
    ExecutorKind,
    PoolKind,
    WorkloadKind,
)
from qbench.settings.model import Config


def arrivals_expected(cfg: Config) -> float:
    """Tasks an open-loop iteration is offered on average (rate x duration, plus the bursts' extra)."""
    w = cfg.workload
    total = w.rate * w.duration_s
    if w.kind is WorkloadKind.BURST:
        total += max(0.0, w.burst_rate - w.rate) * w.burst_s * math.ceil(w.duration_s / w.burst_every_s)
    return total


def worker_processes(cfg: Config) -> int:
    """How many worker processes the process executor starts (0 for the other executors)."""
    if cfg.executor.kind is not ExecutorKind.PROCESS:
        return 0
    return cfg.executor.processes


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
