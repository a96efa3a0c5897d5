"""Looking a configured kind up in a registry (executors, workloads, queues).

Each registry is a plain dict from a kind (an enum of :mod:`qbench.kinds`) to
its implementation, written out in its package's ``__init__``; adding one is
one module plus one line there.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from qbench.errors import ConfigError

K = TypeVar("K", bound=StrEnum)
V = TypeVar("V")


def lookup(registry: Mapping[K, V], key: str, kind: K) -> V:
    """The implementation registered for ``kind``.

    Args:
        registry: kind -> implementation.
        key: the config key that chose ``kind`` (for the message).
        kind: the configured kind.

    Raises:
        ConfigError: nothing is registered for ``kind``; names the key, the value and the kinds.
    """
    try:
        return registry[kind]
    except KeyError:
        registered = ", ".join(str(k) for k in registry) or "none"
        raise ConfigError(key, str(kind), f"registered kinds: {registered}") from None
