"""The queue under test: the protocol every queue implements and qbench's reference SQLite queue."""

from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sqlite_queue import SqliteQueue

__all__ = ["Claimed", "QueueUnderTest", "SqliteQueue"]
