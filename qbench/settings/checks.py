"""Building the settings from a mapping and checking every value: each field, then the rules across fields."""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
import typing
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from qbench.errors import ConfigError
from qbench.kinds import (
    ExecutorKind,
    QueueKind,
    Synchronous,
    WorkloadKind,
)
from qbench.settings.derived import arrivals_expected
from qbench.settings.model import _MAX_INT32, MAX_TASKS, Config

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


_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def _target(key: str, value: object) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    if not isinstance(value, str) or not _TARGET.fullmatch(value.strip()):
        raise ConfigError(key, value, "expected package.module:ClassName")
    return value.strip()


# Values that need more than their type and bounds.
_SPECIAL: dict[str, Callable[[str, object], object]] = {
    "db.dir": _db_dir,
    "queue.target": _target,
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
    for rule in _RULES:
        rule(checked)
    return checked


def _backoff_rule(cfg: Config) -> None:
    if cfg.busy.backoff_cap_ms < cfg.busy.backoff_base_ms:
        raise ConfigError(
            "busy.backoff_cap_ms", cfg.busy.backoff_cap_ms, "expected a number >= busy.backoff_base_ms"
        )


def _process_rules(cfg: Config) -> None:
    processes, kind = cfg.executor.processes, cfg.executor.kind
    if kind is ExecutorKind.PROCESS and processes > cfg.workers:
        raise ConfigError(
            "executor.processes",
            processes,
            f"expected at most workers ({cfg.workers}): each process runs a worker or more",
        )
    if cfg.faults.kill and kind is not ExecutorKind.PROCESS:
        raise ConfigError(
            "faults.kill",
            cfg.faults.kill,
            f"needs executor=process (executor={kind} has no worker processes to kill)",
        )
    if cfg.faults.kill and cfg.queue.lease_s >= cfg.iteration_timeout_s:
        raise ConfigError(
            "queue.lease_s",
            cfg.queue.lease_s,
            f"expected less than iteration_timeout_s ({cfg.iteration_timeout_s:g}) with faults.kill:"
            " a killed worker's tasks come back only when their lease expires",
        )


def _workload_rules(cfg: Config) -> None:
    w = cfg.workload
    if w.kind is WorkloadKind.DRAIN:
        return
    if w.kind is WorkloadKind.BURST and w.burst_s >= w.burst_every_s:
        raise ConfigError(
            "workload.burst_s", w.burst_s, f"expected less than workload.burst_every_s ({w.burst_every_s:g})"
        )
    expected = arrivals_expected(cfg)
    if expected < 1:
        raise ConfigError(
            "workload.rate",
            w.rate,
            f"expected rate x duration_s >= 1 arrival (gives {expected:.3g} at duration_s={w.duration_s:g})",
        )
    if expected > MAX_TASKS:
        raise ConfigError(
            "workload.rate",
            w.rate,
            f"expected at most {MAX_TASKS:,} arrivals per iteration (gives {expected:,.0f})",
        )
    if cfg.iteration_timeout_s <= w.duration_s:
        raise ConfigError(
            "iteration_timeout_s",
            cfg.iteration_timeout_s,
            f"expected more than workload.duration_s ({w.duration_s:g}): arrivals alone take that long",
        )


def _queue_rules(cfg: Config) -> None:
    kind, target = cfg.queue.kind, cfg.queue.target
    if kind is QueueKind.CUSTOM and not target:
        raise ConfigError("queue.target", target, "required with queue=custom: package.module:ClassName")
    if kind is not QueueKind.CUSTOM and target:
        raise ConfigError("queue.target", target, f"used only with queue=custom (queue={kind})")


_RULES: tuple[Callable[[Config], None], ...] = (_backoff_rule, _process_rules, _workload_rules, _queue_rules)
