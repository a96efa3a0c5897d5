"""Reading a plan file with bounds: a shared plan cannot exhaust memory or time.

At most :data:`MAX_BYTES` of UTF-8, safe YAML only (no Python tags), no
anchors or aliases (an alias bomb expands a few lines into gigabytes), no
duplicate keys (YAML would keep the last silently) and nesting at most
:data:`MAX_DEPTH` deep. Each refusal is one :class:`~qbench.errors.PlanError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode

from qbench.errors import PlanError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32


class _Refused(Exception):
    """Raised inside the loader; the reader turns it into a PlanError naming the file."""


def _line(event: Any) -> int:
    mark = getattr(event, "start_mark", None)
    return int(mark.line) + 1 if mark is not None else 0


class PlanLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
    """SafeLoader that refuses anchors, aliases, duplicate keys and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: object) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise _Refused(f"YAML aliases are not allowed in a plan (*{event.anchor}, line {_line(event)})")
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise _Refused(f"YAML anchors are not allowed in a plan (&{event.anchor}, line {_line(event)})")
        if isinstance(event, CollectionStartEvent | ScalarEvent):
            self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep (line {_line(event)})")
        try:
            node: Node | None = super().compose_node(parent, index)
            return node
        finally:
            if isinstance(event, CollectionStartEvent | ScalarEvent):
                self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode):
                if key_node.value in seen:
                    raise _Refused(f"duplicate key '{key_node.value}' (line {key_node.start_mark.line + 1})")
                seen.add(key_node.value)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def read_plan_yaml(path: Path) -> object:
    """The parsed YAML of a plan file, within the bounds above.

    Raises:
        PlanError: the file is missing, too large, not UTF-8, not YAML, or refused; one line.
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PlanError(f"plan {path}: no such file") from None
    except OSError as exc:
        raise PlanError(f"plan {path.name}: not readable ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise PlanError(f"plan {path.name}: larger than {MAX_BYTES // 1024} KiB; a plan is a short file")
    try:
        return yaml.load(data.decode("utf-8"), Loader=PlanLoader)  # PlanLoader is a SafeLoader
    except _Refused as exc:
        raise PlanError(f"plan {path.name}: {exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PlanError(f"plan {path.name}: not readable YAML ({first})") from None
