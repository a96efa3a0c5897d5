"""The queue under test: the two protocols a queue implements, qbench's reference SQLite
queue, the client-level adapters, and how a config's queue is found.

Statement level (:class:`QueueUnderTest`): qbench runs the queue's SQL itself, so
the ceiling, PRAGMAs, pool and busy accounting all apply. Client level
(:class:`~qbench.run.queues.client.ClientQueue`): a library that owns its
connections and SQL, driven through its own API (:mod:`~qbench.run.queues.bridge`).

Adding a queue: a class with either protocol, named by ``queue=custom
queue.target=package.module:ClassName``; or, shipped with qbench, an adapter
in :mod:`~qbench.run.queues.adapters` with its line in
:data:`~qbench.run.queues.loading.ADAPTERS`, its member in ``QueueKind`` and
its file in ``conf/queue/``.
"""

from __future__ import annotations

from collections.abc import Callable

from qbench.kinds import QueueKind
from qbench.run.queues.loading import resolve, statement_queue
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sqlite_queue import SqliteQueue
from qbench.settings import Config

QueueFactory = Callable[[Config], QueueUnderTest]

QUEUES: dict[QueueKind, QueueFactory] = {
    QueueKind.SQLITE: SqliteQueue.from_config,
}


def make_queue(cfg: Config) -> QueueUnderTest:
    """The statement-level queue of a job (for a client-level queue, the reference queue its
    ceiling runs), built from the config.

    Raises:
        ConfigError: the queue does not resolve (:func:`~qbench.run.queues.loading.resolve`).
    """
    if cfg.queue.kind in QUEUES:
        return QUEUES[cfg.queue.kind](cfg)
    return statement_queue(cfg, resolve(cfg))


__all__ = ["QUEUES", "Claimed", "QueueFactory", "QueueUnderTest", "SqliteQueue", "make_queue"]
