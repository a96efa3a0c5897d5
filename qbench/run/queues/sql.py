"""Statements as data, and the two drivers that run them.

The queue's transactions are written once, as generators that yield
:class:`Statement` s and receive each statement's rows. A plain ``sqlite3``
driver (:func:`run_sync`, used by the ceiling, set-up and the thread workers)
and an aiosqlite driver (:func:`run_async`, one await per statement, for set-up)
run the same generators, so the ceiling runs exactly the statements the workers
run. The async workers run :func:`run_or_roll_back` (one transaction) or
:func:`run_then` (an ack and the next claim) on a connection's own thread, so a
whole transaction, or two, costs one round trip to that thread.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from qbench.errors import QbenchError

if TYPE_CHECKING:
    import aiosqlite

T = TypeVar("T")


class TxPhase(StrEnum):
    """Where in a transaction a statement runs; busy errors are counted by it."""

    BEGIN = "begin"
    CLAIM = "claim"
    ACK = "ack"
    COMMIT = "commit"
    SETUP = "setup"


@dataclass(frozen=True, slots=True)
class Statement:
    phase: TxPhase
    sql: str
    params: Mapping[str, Any] | Sequence[Any] = ()
    # executemany over params (a sequence of rows); returns no rows
    many: bool = False
    # the statement that asks for the write lock: its duration is the lock wait
    takes_write_lock: bool = False


Transaction = Generator[Statement, list[Any], T]

# Extended result codes of the SQLITE_BUSY and SQLITE_LOCKED families.
BUSY_CODE_NAMES: dict[int, str] = {
    5: "busy",
    261: "busy_recovery",
    517: "busy_snapshot",
    773: "busy_timeout",
    6: "locked",
    262: "locked_sharedcache",
    518: "locked_vtab",
}
BUSY_CODE_COLUMNS = ("busy", "busy_snapshot", "busy_recovery", "busy_timeout", "locked", "other")


class BusyError(QbenchError):
    """An SQLITE_BUSY/SQLITE_LOCKED family error that reached the application."""

    def __init__(self, phase: TxPhase, code: int | None, cause: sqlite3.Error) -> None:
        self.phase = phase
        self.code = code
        self.code_name = BUSY_CODE_NAMES.get(code, "other") if code is not None else "other"
        if self.code_name not in BUSY_CODE_COLUMNS:
            self.code_name = "other"
        super().__init__(f"{phase}: {cause} (code {code})")


def busy_code(exc: sqlite3.Error) -> int | None:
    """The extended result code when ``exc`` is in the BUSY/LOCKED family, else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code if code & 0xFF in (5, 6) else None
    return None


# Named statements: the tables in schema.sql, the queue's transactions in queries.sql.
SQL_FILES = ("schema.sql", "queries.sql")


class UnknownQueryError(QbenchError, KeyError):
    """A statement name that neither SQL file defines."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _named(text: str, file: str, out: dict[str, str]) -> None:
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        name = name.strip()
        if name in out:
            raise QbenchError(f"{file}: the statement name {name!r} is already defined")
        lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
        out[name] = "\n".join(lines).strip()


@cache
def queries() -> dict[str, str]:
    """The named statements of ``schema.sql`` and ``queries.sql`` (``-- name: NAME`` headers)."""
    package = resources.files("qbench.run.queues")
    out: dict[str, str] = {}
    for file in SQL_FILES:
        _named(package.joinpath(file).read_text(encoding="utf-8"), file, out)
    return out


def query(name: str) -> str:
    """The statement called ``name``; call it with a literal name, so the SQL files can be checked.

    Raises:
        UnknownQueryError: no statement has that name.
    """
    try:
        return queries()[name]
    except KeyError:
        defined = ", ".join(sorted(queries()))
        raise UnknownQueryError(
            f"no statement named {name!r} in {' or '.join(SQL_FILES)} (defined: {defined})"
        ) from None


LockWaitSink = Callable[[float], None]


def run_sync(conn: sqlite3.Connection, tx: Transaction[T], on_lock_wait: LockWaitSink | None = None) -> T:
    """Run a transaction generator on a plain sqlite3 connection.

    Raises:
        BusyError: a BUSY/LOCKED family error, tagged with the statement's phase.
    """
    try:
        stmt = next(tx)
        while True:
            try:
                if stmt.many:
                    conn.executemany(stmt.sql, stmt.params)
                    rows: list[Any] = []
                elif stmt.takes_write_lock and on_lock_wait is not None:
                    started = time.perf_counter()
                    try:
                        rows = conn.execute(stmt.sql, stmt.params).fetchall()
                    finally:  # a wait that ends in SQLITE_BUSY was a wait too
                        on_lock_wait(time.perf_counter() - started)
                else:
                    rows = conn.execute(stmt.sql, stmt.params).fetchall()
            except sqlite3.OperationalError as exc:
                code = busy_code(exc)
                if code is None:
                    raise
                raise BusyError(stmt.phase, code, exc) from exc
            stmt = tx.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def run_or_roll_back(
    conn: sqlite3.Connection, tx: Transaction[T], on_lock_wait: LockWaitSink | None = None
) -> T:
    """:func:`run_sync`, and after a busy error roll back what is still open, then raise.

    A failed COMMIT in a rollback journal leaves the transaction open; a failed statement
    may already have rolled it back: only what is open is rolled back. This is the whole
    of one attempt, so a worker can run it on a connection's own thread in one call.

    Raises:
        BusyError: a BUSY/LOCKED family error, tagged with the statement's phase.
    """
    try:
        return run_sync(conn, tx, on_lock_wait)
    except BusyError:
        if conn.in_transaction:
            conn.execute(query("rollback"))
        raise


U = TypeVar("U")


def run_then(
    conn: sqlite3.Connection,
    first: Transaction[T],
    then: Transaction[U],
    on_lock_wait: LockWaitSink | None = None,
) -> tuple[T, U | BusyError, float]:
    """Run ``first``, then ``then``: two transactions, two commits, one call (e.g. the ack of a
    batch and the claim of the next one, on the connection's own thread).

    Returns:
        (first's result, then's result or the busy error that stopped it, the perf_counter
        time at which ``first`` ended, where ``then`` began).

    Raises:
        BusyError: ``first`` got a busy error (rolled back); ``then`` was not started.
    """
    done = run_or_roll_back(conn, first, on_lock_wait)
    started = time.perf_counter()
    try:
        return done, run_or_roll_back(conn, then, on_lock_wait), started
    except BusyError as err:
        return done, err, started


async def run_async(
    conn: aiosqlite.Connection, tx: Transaction[T], on_lock_wait: LockWaitSink | None = None
) -> T:
    """Run a transaction generator on an aiosqlite connection: one await per statement
    (set-up uses it; the workers run whole transactions on the connection's thread instead).

    Raises:
        BusyError: a BUSY/LOCKED family error, tagged with the statement's phase.
    """
    try:
        stmt = next(tx)
        while True:
            try:
                if stmt.many:
                    await conn.executemany(stmt.sql, stmt.params)
                    rows: list[Any] = []
                elif stmt.takes_write_lock and on_lock_wait is not None:
                    started = time.perf_counter()
                    try:
                        rows = await conn.execute_fetchall(stmt.sql, stmt.params)  # type: ignore[assignment]
                    finally:  # a wait that ends in SQLITE_BUSY was a wait too
                        on_lock_wait(time.perf_counter() - started)
                else:
                    rows = await conn.execute_fetchall(stmt.sql, stmt.params)  # type: ignore[assignment]
            except sqlite3.OperationalError as exc:
                code = busy_code(exc)
                if code is None:
                    raise
                raise BusyError(stmt.phase, code, exc) from exc
            stmt = tx.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
