from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qbench.errors import PragmaError
from qbench.kinds import JournalMode, Synchronous
from qbench.run.pragmas import ConnectionSettings, configure
from qbench.run.queues.sql import run_sync


@pytest.mark.parametrize("mode", list(JournalMode))
@pytest.mark.parametrize("sync", list(Synchronous))
def test_every_pragma_is_set_and_read_back(tmp_path: Path, mode: JournalMode, sync: Synchronous) -> None:
    conn = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    try:
        run_sync(conn, configure(ConnectionSettings(mode, sync, busy_timeout_ms=1234)))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == mode.value
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        assert level == ["off", "normal", "full", "extra"].index(sync.value)
    finally:
        conn.close()


def test_a_pragma_that_does_not_take_is_an_error() -> None:
    # An in-memory database cannot be in WAL mode: SQLite answers "memory", silently.
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        with pytest.raises(PragmaError, match="journal_mode"):
            run_sync(conn, configure(ConnectionSettings(JournalMode.WAL, Synchronous.NORMAL, 0)))
    finally:
        conn.close()


@pytest.mark.parametrize("bad", [-1, 2**31, True, 1.5, "5"])
def test_only_range_checked_integers_reach_a_pragma(bad: object) -> None:
    with pytest.raises(PragmaError):
        ConnectionSettings(JournalMode.WAL, Synchronous.NORMAL, bad)  # type: ignore[arg-type]


def test_only_enum_values_reach_a_pragma() -> None:
    with pytest.raises(ValueError):
        ConnectionSettings("wal; DROP TABLE tasks", Synchronous.NORMAL, 0)  # type: ignore[arg-type]
