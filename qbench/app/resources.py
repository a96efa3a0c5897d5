"""Does this machine have what a job needs? Open files, SQLite's maximum length, memory.

Checked by preflight, so a job that could only fail at run time (``workers=10000``
against an open-files limit of 1024) is refused in one line before anything runs.
The messages name the machine's limit, never a number derived from a config value
(which may come from the environment).
"""

from __future__ import annotations

import sqlite3
from functools import cache

from qbench.errors import ConfigError
from qbench.kinds import PoolKind
from qbench.settings import Config, pool_connections

# Each connection holds the database file and its WAL (or, while writing, its rollback journal).
FILES_PER_CONNECTION = 2
# The interpreter, its libraries, logs, the resource monitor and the Parquet writer.
FILES_RESERVED = 64
# Room in a task's row for its other columns (id, state, times, attempts).
ROW_OVERHEAD_BYTES = 1024
_SQLITE_MAX_LENGTH = 1_000_000_000  # SQLITE_MAX_LENGTH, SQLite's default


def open_files_limits() -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_NOFILE; None where there is no such limit (or no ``resource`` module)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def files_needed(cfg: Config) -> int:
    return pool_connections(cfg) * FILES_PER_CONNECTION + FILES_RESERVED


def raise_open_files_limit_to(need: int) -> None:
    """Raise the soft open-files limit to ``need`` (within the hard limit, which preflight checked)."""
    limits = open_files_limits()
    if limits is None or need <= 0:
        return
    import resource

    soft, hard = limits
    if soft != resource.RLIM_INFINITY and soft < need and (hard == resource.RLIM_INFINITY or need <= hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError):
            pass  # the job reports what happens


def _check_open_files(cfg: Config) -> None:
    limits = open_files_limits()
    if limits is None:
        return
    import resource

    hard = limits[1]
    if hard == resource.RLIM_INFINITY or files_needed(cfg) <= hard:
        return
    most = max(0, (hard - FILES_RESERVED) // FILES_PER_CONNECTION)
    key, value = ("pool.size", cfg.pool.size) if cfg.pool.kind is PoolKind.FIXED else ("workers", cfg.workers)
    raise ConfigError(
        key,
        value,
        f"expected at most {most:,} connections: the open-files limit is {hard:,} "
        f"({FILES_PER_CONNECTION} per connection; raise it with ulimit -n, or choose a smaller pool)",
    )


@cache
def sqlite_max_length() -> int:
    """SQLite's maximum length of a string, BLOB or row in this build."""
    try:
        conn = sqlite3.connect(":memory:")
        try:
            return int(conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH))
        finally:
            conn.close()
    except (sqlite3.Error, AttributeError):
        return _SQLITE_MAX_LENGTH


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _check_payload(cfg: Config) -> None:
    limit = sqlite_max_length()
    if cfg.payload_bytes > limit - ROW_OVERHEAD_BYTES:
        raise ConfigError(
            "payload_bytes",
            cfg.payload_bytes,
            f"expected at most {limit - ROW_OVERHEAD_BYTES:,} bytes: SQLite's maximum length of a row "
            f"is {limit:,} (SQLITE_MAX_LENGTH), with room left for the task's other columns",
        )
    tasks = max(cfg.tasks, cfg.ceiling.tasks)
    available = available_memory()
    if cfg.payload_bytes * tasks > available:
        raise ConfigError(
            "payload_bytes",
            cfg.payload_bytes,
            f"the backlog (payload_bytes x tasks) must fit in the available memory "
            f"({available / 2**30:,.1f} GiB)",
        )


def check_resources(cfg: Config) -> None:
    """Refuse a validated config this machine cannot run.

    Raises:
        ConfigError: naming the key (workers, pool.size or payload_bytes) and the machine's limit.
    """
    _check_open_files(cfg)
    _check_payload(cfg)
