"""``${STAGE.FIELD@column=value}``: the row selectors a reference may use, checked before anything runs.

A recommendations row is told apart by its group columns
(:func:`qbench.analysis.recommend.group_columns` over the config columns
that tell configs apart, as :mod:`qbench.analysis.summary` picks them), so
those are the columns a reference may select on; the value must be one the
column can hold (a member of its enum, a number in its bounds).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from qbench.settings import Config

# a recommendations column that is not a config column: any text
_FREE = "host"


def config_columns(cls: type[Any] = Config, prefix: str = "") -> dict[str, tuple[Any, Mapping[str, Any]]]:
    """Every flat config column (as :func:`qbench.settings.flatten` names it): its type and bounds."""
    out: dict[str, tuple[Any, Mapping[str, Any]]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out.update(config_columns(kind, f"{prefix}{f.name}_"))  # type: ignore[arg-type]
        else:
            out[f"{prefix}{f.name}"] = (kind, f.metadata)
    return out


def selectable_columns() -> list[str]:
    """The columns that tell recommendation rows apart, derived from the analysis code."""
    from qbench.analysis.recommend import group_columns
    from qbench.analysis.summary import NOT_A_KEY

    keys = [_FREE, *(c for c in config_columns() if c not in NOT_A_KEY)]
    return group_columns(keys)


def _value_problem(kind: Any, meta: Mapping[str, Any], value: str) -> str | None:
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        allowed = [m.value for m in kind]
        return None if value in allowed else f"allowed: {', '.join(allowed)}"
    if kind is bool:
        return None if value.lower() in ("true", "false") else "expected true or false"
    if kind in (int, float):
        try:
            number = int(value) if kind is int else float(value)
        except ValueError:
            return f"expected {'an integer' if kind is int else 'a number'}"
        low, high = meta.get("low", -math.inf), meta.get("high", math.inf)
        if not (math.isfinite(number) and low <= number <= high):
            return f"expected a value in [{low:g}, {high:g}]"
    return None


def where_problem(column: str, value: str) -> str | None:
    """Why ``@column=value`` can match no recommendations row, or None."""
    allowed = selectable_columns()
    if column not in allowed:
        return f"'{column}' is not a column recommendations are grouped by (allowed: {', '.join(allowed)})"
    kind = config_columns().get(column)
    if kind is None:
        return None
    reason = _value_problem(kind[0], kind[1], value)
    return f"{column}={value!r} can match no row ({reason})" if reason else None
