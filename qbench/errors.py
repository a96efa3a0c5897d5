"""qbench's exceptions.

One root, so callers can catch everything qbench raises on purpose::

    QbenchError
    ├── ConfigError        a user-supplied value is not allowed (one line: key, value, allowed)
    ├── PragmaError        a PRAGMA did not take effect (SQLite ignores bad values silently)
    ├── AuditError         the job lost, duplicated or invented work
    ├── DrainTimeoutError  an iteration did not drain its backlog in time
    └── ResultsError       a results file cannot be written or read as qbench results
"""

from __future__ import annotations


class QbenchError(Exception):
    """Root of every error qbench raises on purpose."""


class ConfigError(QbenchError):
    """A configuration value is not allowed.

    The message is one line naming the key, the value and what is allowed.
    """

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


class PragmaError(QbenchError):
    """A PRAGMA was set but reading it back shows another value."""


class AuditError(QbenchError):
    """What went into the queue did not come out exactly once."""


class DrainTimeoutError(QbenchError):
    """The workers did not drain the backlog within the iteration timeout."""


class ResultsError(QbenchError):
    """A results file cannot be written (would overwrite) or read."""
