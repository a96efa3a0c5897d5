"""The queue under test: the protocol every queue implements and qbench's reference SQLite queue."""

from qbench.queue.protocol import Claimed, QueueUnderTest
from qbench.queue.sqlite_queue import SqliteQueue

__all__ = ["Claimed", "QueueUnderTest", "SqliteQueue"]
