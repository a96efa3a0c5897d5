"""qbench's exceptions.

One root, so callers can catch everything qbench raises on purpose; each
command-line tool turns a :class:`QbenchError` into one line and exit 2 at
its boundary (a failed job or stage is a result, exit 1, not an error)::

    QbenchError
    ├── ConfigError        a user-supplied value is not allowed (one line: key, value, allowed)
    ├── UsageError         a command line, plan or option that qbench refuses (one line)
    │   └── PlanError      a plan file is not valid, or a reference cannot be resolved
    │       └── Unresolved a reference whose upstream stage has not finished (dry runs)
    ├── PragmaError        a PRAGMA did not take effect (SQLite ignores bad values silently)
    ├── MeasurementError   an iteration could not be measured as asked
    │   ├── DrainTimeoutError  an iteration did not drain its backlog in time
    │   └── CeilingError       the single-connection ceiling loop lost or left tasks
    ├── FitInputError      (also a ValueError) numbers a scaling fit cannot take
    ├── BusyError          (qbench.run.queues.sql) an SQLITE_BUSY/LOCKED family error
    │                      that reached the application; counted, then retried or given up
    ├── UnknownQueryError  (qbench.run.queues.sql; also a KeyError) a named query that
    │                      neither queries.sql nor schema.sql defines
    └── ResultsError       a results file cannot be written or read as qbench results
        └── AggregateError nothing could be aggregated or compared
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


class UsageError(QbenchError):
    """A command line, plan or option that qbench refuses, in one line."""


class PlanError(UsageError):
    """A plan file is not valid (one line naming the stage)."""


class Unresolved(PlanError):
    """A reference whose upstream stage has not finished (only in a dry run)."""


class PragmaError(QbenchError):
    """A PRAGMA was set but reading it back shows another value."""


class MeasurementError(QbenchError):
    """An iteration could not be measured as asked."""


class DrainTimeoutError(MeasurementError):
    """The workers did not drain the backlog within the iteration timeout."""


class CeilingError(MeasurementError):
    """The single-connection ceiling loop did not acknowledge every task."""


class FitInputError(QbenchError, ValueError):
    """A scaling fit was given numbers it cannot take (or asked to predict without coefficients)."""


class ResultsError(QbenchError):
    """A results file cannot be written (would overwrite) or read."""


class AggregateError(ResultsError):
    """Nothing could be aggregated or compared (a one-line reason)."""
