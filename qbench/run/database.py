"""Preparing a fresh database file for an iteration, and checking it afterwards.

Set-up (creation, history rows) is never inside a measured duration; the
backlog's enqueue is timed on its own.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from qbench.run.pragmas import ConnectionSettings, configure
from qbench.run.queues.bridge import ClientSource, put_tasks
from qbench.run.queues.protocol import QueueUnderTest
from qbench.run.queues.sql import query, run_sync

# History rows are written in large transactions: they are set-up, not measured.
_HISTORY_BATCH = 50_000


@dataclass(frozen=True)
class Backlog:
    # first task id of the backlog (history rows come before it)
    first_id: int
    tasks: int
    # seconds spent enqueueing the backlog
    enqueue_s: float
    # seconds spent on everything else: file creation, schema, history rows
    setup_s: float


# A client-level queue's file as its history left it: copied for each iteration instead of
# running the history through the library again (set-up, never measured).
HISTORY_SUFFIX = "-history"


def remove_database(db_path: Path, *, history: bool = False) -> None:
    """Delete the database and its journal, WAL and shared-memory files (``history``: and the
    history template of a client-level queue, once the job is over)."""
    for suffix in ("", "-journal", "-wal", "-shm", *((HISTORY_SUFFIX,) if history else ())):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def connect(
    db_path: Path, settings: ConnectionSettings, *, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A plain sqlite3 connection with explicit transactions and every PRAGMA checked.

    ``check_same_thread=False`` only for a connection handed between threads by a pool
    that lends it to one thread at a time.
    """
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=check_same_thread)
    try:
        run_sync(conn, configure(settings))
    except BaseException:
        conn.close()
        raise
    return conn


def prepare_database(
    db_path: Path,
    queue: QueueUnderTest,
    settings: ConnectionSettings,
    *,
    history_rows: int,
    tasks: int,
    payload: bytes,
    enqueue_batch: int,
) -> Backlog:
    """Create a fresh database with ``history_rows`` done tasks and a backlog of ``tasks``."""
    started = time.perf_counter()
    remove_database(db_path)
    conn = connect(db_path, settings)
    try:
        run_sync(conn, queue.create_schema())
        now = time.time()
        for start in range(1, history_rows + 1, _HISTORY_BATCH):
            ids = range(start, min(start + _HISTORY_BATCH, history_rows + 1))
            run_sync(conn, queue.enqueue(ids, payload, now, done=True))
        first_id = history_rows + 1
        setup_s = time.perf_counter() - started
        enqueue_started = time.perf_counter()
        for start in range(first_id, first_id + tasks, enqueue_batch):
            ids = range(start, min(start + enqueue_batch, first_id + tasks))
            run_sync(conn, queue.enqueue(ids, payload, time.time()))
        enqueue_s = time.perf_counter() - enqueue_started
    finally:
        conn.close()
    return Backlog(first_id=first_id, tasks=tasks, enqueue_s=enqueue_s, setup_s=setup_s)


def _client_history(db_path: Path, source: ClientSource, rows: int, payload: bytes, template: Path) -> None:
    """Put ``rows`` tasks through the queue by its own calls (put_many, get, ack), close it, and
    keep the file as the template of later iterations (when the queue left no journal open)."""
    queue = source.open(db_path)
    try:
        for start in range(1, rows + 1, _HISTORY_BATCH):
            put_tasks(queue, range(start, min(start + _HISTORY_BATCH, rows + 1)), payload)
            while (got := queue.get()) is not None:
                queue.ack(got[0])
    finally:
        queue.close()
    if not any(Path(f"{db_path}{suffix}").exists() for suffix in ("-wal", "-journal")):
        shutil.copyfile(db_path, template)


def prepare_client_database(
    db_path: Path,
    source: ClientSource,
    *,
    history_rows: int,
    tasks: int,
    payload: bytes,
    enqueue_batch: int,
) -> Backlog:
    """A fresh file holding a client-level queue: ``history_rows`` tasks that went through it
    by its own calls (put_many, get, ack; in the first iteration, then copied from the file it
    left), then a backlog of ``tasks`` put in batches of ``enqueue_batch``. Every item carries
    its task id."""
    started = time.perf_counter()
    remove_database(db_path)
    template = Path(f"{db_path}{HISTORY_SUFFIX}")
    if history_rows and template.exists():  # the first iteration's history, byte for byte
        shutil.copyfile(template, db_path)
    elif history_rows:
        _client_history(db_path, source, history_rows, payload, template)
    queue = source.open(db_path)
    try:
        first_id = history_rows + 1
        setup_s = time.perf_counter() - started
        enqueue_started = time.perf_counter()
        for start in range(first_id, first_id + tasks, enqueue_batch):
            put_tasks(queue, range(start, min(start + enqueue_batch, first_id + tasks)), payload)
        enqueue_s = time.perf_counter() - enqueue_started
    finally:
        queue.close()
    return Backlog(first_id=first_id, tasks=tasks, enqueue_s=enqueue_s, setup_s=setup_s)


@dataclass(frozen=True)
class DatabaseCheck:
    integrity_ok: bool
    integrity_message: str
    # rows per state: ready, leased, done (empty for a client-level queue: its tables are its own)
    states: dict[str, int]
    db_size_bytes: int
    # a client-level queue: whether it still handed out a task after the drain (None: not asked)
    client_leftover: bool | None = None
    # a client-level queue: what it runs with, read from its own connection (its in_effect())
    in_effect: dict[str, object] | None = None


def check_database(db_path: Path, queue: QueueUnderTest, settings: ConnectionSettings) -> DatabaseCheck:
    """PRAGMA integrity_check and the queue's own row counts, after the drain."""
    conn = connect(db_path, settings)
    try:
        rows = conn.execute(query("integrity_check")).fetchall()
        states = run_sync(conn, queue.count_by_state())
    finally:
        conn.close()
    messages = [str(row[0]) for row in rows]
    size = Path(db_path).stat().st_size
    return DatabaseCheck(messages == ["ok"], "; ".join(messages[:5]), states, size)


def check_client_database(db_path: Path, source: ClientSource) -> DatabaseCheck:
    """After a client-level queue's drain: PRAGMA integrity_check on a plain connection that sets
    nothing, whether the queue, opened afresh, still hands out a task, and what it runs with."""
    queue = source.open(db_path)
    try:
        in_effect = dict(queue.in_effect()) if callable(getattr(queue, "in_effect", None)) else {}  # type: ignore[attr-defined]
        leftover = queue.get() is not None
    finally:
        queue.close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        if "journal_mode" not in in_effect:  # at least what the file itself says
            in_effect["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
        rows = conn.execute(query("integrity_check")).fetchall()
    finally:
        conn.close()
    messages = [str(row[0]) for row in rows]
    size = Path(db_path).stat().st_size
    return DatabaseCheck(messages == ["ok"], "; ".join(messages[:5]), {}, size, leftover, in_effect)
