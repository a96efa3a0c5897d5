"""The Hydra schema that ``conf/`` composes over, derived from :mod:`qbench.settings`.

The settings are frozen and enum-typed for the code below the entry point.
While Hydra composes, the config groups must be able to set values and YAML
1.1 may hand a closed set a boolean (``synchronous: off``), so the schema
registered here is a mutable copy of the settings classes with every enum
field typed ``str``. Nothing is written twice: fields, defaults and order
come from the settings; :func:`qbench.settings.validate` maps the strings
back to enum members.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import StrEnum
from functools import cache
from typing import Any

from hydra.core.config_store import ConfigStore

from qbench.settings import Config

SCHEMA_NAME = "base_config"


def _raw(cls: type[Any]) -> type[Any]:
    """A mutable dataclass with ``cls``'s fields; enum fields become ``str``."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            nested = _raw(kind)  # type: ignore[arg-type]
            fields.append((f.name, nested, dataclasses.field(default_factory=nested)))
        elif isinstance(kind, type) and issubclass(kind, StrEnum):
            fields.append((f.name, str, dataclasses.field(default=str(f.default))))
        else:
            fields.append((f.name, kind, dataclasses.field(default=f.default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)


@cache
def raw_schema() -> type[Any]:
    """The schema class registered with Hydra (built once)."""
    return _raw(Config)


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore as ``base_config``."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=raw_schema())
