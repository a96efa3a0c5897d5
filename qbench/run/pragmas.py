"""Connection settings: PRAGMAs formatted only from enums and checked integers, each read back.

PRAGMA values cannot be bound parameters, and SQLite silently ignores or
coerces bad ones (``journal_mode=bogus`` keeps the current mode,
``busy_timeout=-1`` gives 0). So every value formatted into a PRAGMA here is
an enum member or a range-checked integer, and every PRAGMA is read back: one
that did not take raises :class:`PragmaError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbench.errors import PragmaError
from qbench.kinds import JournalMode, Synchronous
from qbench.run.queues.sql import Statement, Transaction, TxPhase
from qbench.settings import Config, effective_busy_timeout_ms

# PRAGMA synchronous reads back as an integer.
_SYNCHRONOUS_LEVEL = {
    Synchronous.OFF: 0,
    Synchronous.NORMAL: 1,
    Synchronous.FULL: 2,
    Synchronous.EXTRA: 3,
}
_MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class ConnectionSettings:
    journal_mode: JournalMode
    synchronous: Synchronous
    # milliseconds
    busy_timeout_ms: int
    # pages; applied in WAL mode only
    wal_autocheckpoint_pages: int = 1000

    def __post_init__(self) -> None:
        # Checked here too, because these integers are formatted into SQL.
        for name in ("busy_timeout_ms", "wal_autocheckpoint_pages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT32:
                raise PragmaError(f"{name}={value!r} cannot be formatted into a PRAGMA")
        JournalMode(self.journal_mode)
        Synchronous(self.synchronous)


def connection_settings(cfg: Config) -> ConnectionSettings:
    """The settings every connection of a job gets (busy timeout 0 under the app busy policy)."""
    return ConnectionSettings(
        journal_mode=cfg.journal.mode,
        synchronous=cfg.synchronous,
        busy_timeout_ms=effective_busy_timeout_ms(cfg),
        wal_autocheckpoint_pages=cfg.journal.wal_autocheckpoint_pages,
    )


def _pragmas(settings: ConnectionSettings) -> list[tuple[str, str, object]]:
    """(pragma, value to set, value expected on read-back), in the order to apply them."""
    mode = JournalMode(settings.journal_mode)
    out: list[tuple[str, str, object]] = [
        ("busy_timeout", str(settings.busy_timeout_ms), settings.busy_timeout_ms),
        ("journal_mode", mode.value.upper(), mode.value),
        (
            "synchronous",
            Synchronous(settings.synchronous).value.upper(),
            _SYNCHRONOUS_LEVEL[Synchronous(settings.synchronous)],
        ),
    ]
    if mode is JournalMode.WAL:
        out.append(
            (
                "wal_autocheckpoint",
                str(settings.wal_autocheckpoint_pages),
                settings.wal_autocheckpoint_pages,
            )
        )
    return out


def configure(settings: ConnectionSettings) -> Transaction[None]:
    """Set and read back every PRAGMA (run with run_sync or run_async).

    Raises:
        PragmaError: a PRAGMA reads back another value than the one set.
    """
    for name, value, expected in _pragmas(settings):
        yield Statement(TxPhase.SETUP, f"PRAGMA {name} = {value}")
        rows = yield Statement(TxPhase.SETUP, f"PRAGMA {name}")
        actual = rows[0][0] if rows else None
        if isinstance(actual, str):
            actual = actual.lower()
        if actual != expected:
            raise PragmaError(
                f"PRAGMA {name} = {value} did not take effect: it reads back {actual!r}"
                + (" (WAL needs a local file system and a file database)" if name == "journal_mode" else "")
            )
