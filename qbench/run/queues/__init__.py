"""The queue under test: the protocol every queue implements, qbench's reference SQLite queue,
and the registry of queues by :class:`~qbench.kinds.QueueKind`.

Adding a queue: a module with a class that implements :class:`QueueUnderTest`
and a factory from the validated :class:`~qbench.settings.Config`, plus its
line in :data:`QUEUES` (and its member in ``QueueKind``).
"""

from __future__ import annotations

from collections.abc import Callable

from qbench.kinds import QueueKind
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sqlite_queue import SqliteQueue
from qbench.run.registry import lookup
from qbench.settings import Config

QueueFactory = Callable[[Config], QueueUnderTest]

QUEUES: dict[QueueKind, QueueFactory] = {
    QueueKind.SQLITE: SqliteQueue.from_config,
}


def make_queue(cfg: Config) -> QueueUnderTest:
    """The queue ``cfg.queue.kind`` names, built from the config.

    Raises:
        ConfigError: no queue is registered for that kind.
    """
    return lookup(QUEUES, "queue.kind", cfg.queue.kind)(cfg)


__all__ = ["QUEUES", "Claimed", "QueueFactory", "QueueUnderTest", "SqliteQueue", "make_queue"]
