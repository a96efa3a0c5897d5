"""qbench's exceptions.

One root, so callers can catch everything qbench raises on purpose; each
command-line tool turns a :class:`QbenchError` into one line and exit 2 at
its boundary (a failed job or stage is a result, exit 1, not an error)::

    QbenchError
    ├── ConfigError        a user-supplied value is not allowed (one line: key, value, allowed)
    ├── UsageError         a command line, plan or option that qbench refuses (one line)
    │   └── PlanError      a plan file is not valid, or a reference cannot be resolved
    │       └── Unresolved a reference whose upstream stage has not finished (dry runs)
    ├── PlanInterrupted    SIGINT/SIGTERM stopped a plan run, its child sweep with it (exit 130)
    ├── PragmaError        a PRAGMA did not take effect (SQLite ignores bad values silently)
    ├── MeasurementError   an iteration could not be measured as asked
    │   ├── DrainTimeoutError  an iteration did not drain its backlog in time
    │   ├── LivelockError      no task acknowledged for watchdog_s while busy errors kept growing
    │   ├── CeilingError       the single-connection ceiling loop lost or left tasks
    │   └── WorkerProcessError a worker process of executor=process failed, died or did not start
    ├── FitInputError      (also a ValueError) numbers a scaling fit cannot take
    ├── BusyError          (qbench.run.queues.sql) an SQLITE_BUSY/LOCKED family error
    │                      that reached the application; counted, then retried or given up
    ├── UnknownQueryError  (qbench.run.queues.sql; also a KeyError) a named query that
    │                      neither queries.sql nor schema.sql defines
    └── ResultsError       a results file cannot be written or read as qbench results
        ├── ResultsWriteError  (also an OSError) a file could not be written (disk full, read-only
        │                      directory, ...): nothing was replaced, no temporary file is left
        ├── UnreadableResultsError  not readable as qbench results: not a regular file, corrupt,
        │                      truncated, foreign, of an unknown schema version, wrong column types
        ├── BadValueError      a readable results file holds a value no statistic may take
        │                      (a non-finite or negative throughput, a missing identity, ...)
        ├── JobFailedError     the job failed, was interrupted or never finished: nothing of it counts
        └── AggregateError nothing could be aggregated or compared

Also :func:`signal_name`, the signal a KeyboardInterrupt stands for, for the
run and app layers alike.
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


class PlanInterrupted(QbenchError):
    """SIGINT or SIGTERM stopped a plan run; the running stage's sweep was stopped with it.

    The stage is recorded as interrupted (a re-run resumes it); the command exits 130.
    """

    def __init__(self, signum: int, stage: str | None = None) -> None:
        self.signum = signum
        self.stage = stage
        super().__init__(f"signal {signum}" if stage is None else f"signal {signum} in stage '{stage}'")


class PragmaError(QbenchError):
    """A PRAGMA was set but reading it back shows another value."""


class MeasurementError(QbenchError):
    """An iteration could not be measured as asked."""


class DrainTimeoutError(MeasurementError):
    """The workers did not drain the backlog within the iteration timeout."""


class LivelockError(MeasurementError):
    """No task got its first ack for ``watchdog_s`` seconds while the workers' busy errors kept growing.

    A finding about the config (its workers keep colliding and none gets through), not a crash.
    """

    def __init__(self, message: str, *, acked: int, tasks: int, window_s: float, busy: int) -> None:
        super().__init__(message)
        self.acked = acked
        self.tasks = tasks
        # seconds without a new ack, and the busy errors counted in them
        self.window_s = window_s
        self.busy = busy


class CeilingError(MeasurementError):
    """The single-connection ceiling loop did not acknowledge every task."""


class WorkerProcessError(MeasurementError):
    """A worker process of executor=process failed (its error, in one line), ended without
    reporting, or did not start in time; the other processes were stopped."""


class FitInputError(QbenchError, ValueError):
    """A scaling fit was given numbers it cannot take (or asked to predict without coefficients)."""


class ResultsError(QbenchError):
    """A results file cannot be written (would overwrite) or read."""


class ResultsWriteError(ResultsError, OSError):
    """A file could not be written: the real OS error (``errno`` kept) and the path, in one line.

    Also an :class:`OSError`, so code that handles OS errors around a write still catches it.
    """

    # the OS's reason alone ("No space left on device"), without the path
    reason: str = ""


class UnreadableResultsError(ResultsError):
    """A file is not readable as qbench results (not a regular file, corrupt, foreign, wrong types)."""


class BadValueError(ResultsError):
    """A readable results file holds a value no statistic may take; the file is left out."""


class JobFailedError(ResultsError):
    """The job failed, was interrupted or never finished (the reason it recorded, in one line)."""


class AggregateError(ResultsError):
    """Nothing could be aggregated or compared (a one-line reason)."""


def signal_name(exc: KeyboardInterrupt) -> str:
    """The signal behind a KeyboardInterrupt: SIGINT, unless whoever raised it named another."""
    name = str(exc.args[0]) if exc.args else ""
    return name if name.startswith("SIG") else "SIGINT"
