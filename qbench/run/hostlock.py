"""The host guard: one job's measured work at a time on a host (``host_lock=wait|fail|off``).

A job's measured work (its ceiling, warmup and measured iterations) holds an
exclusive ``flock`` on one file per host, in a host-wide directory:
``$QBENCH_LOCK_DIR`` when set, else ``$XDG_RUNTIME_DIR/qbench``, else
``/tmp/qbench-locks-UID``. So whatever a launcher runs in parallel (joblib,
submitit, several shells), no two measured windows on one host overlap; set-up
before and aggregation after may. The holder writes who it is (pid, job
number, run directory, since when) into the file once it holds the lock, for
the message of whoever waits or is refused.

The kernel releases an ``flock`` when its process dies, however it dies, so
a crash or ``kill -9`` never leaves the host locked; the file itself is never
deleted (a waiter may hold it open).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qbench.errors import MeasurementError
from qbench.kinds import HostLock

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "QBENCH_LOCK_DIR"
_UNKNOWN_HOLDER = "another job (it has not yet said which)"


def lock_dir() -> Path:
    """The host-wide directory of the lock file (created when missing)."""
    chosen = os.environ.get(LOCK_DIR_ENV)
    if chosen:
        return Path(chosen)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime) / "qbench"
    return Path(tempfile.gettempdir()) / f"qbench-locks-{os.getuid()}"


def lock_path() -> Path:
    """The lock file of this host (named after it, so a directory shared by hosts still works)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return lock_dir() / f"measure-{name}.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds (or asks for) the lock: written into the lock file by its holder."""

    job_num: int
    run_dir: str
    pid: int = 0

    def record(self) -> str:
        return json.dumps(
            {
                "pid": self.pid or os.getpid(),
                "job_num": self.job_num,
                "run_dir": self.run_dir,
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )


def describe(text: str) -> str:
    """The holder a lock file's text names, in words: job N (pid P, run dir D, since T)."""
    try:
        data: Any = json.loads(text)
        return (
            f"job {int(data['job_num'])} (pid {int(data['pid'])}, run dir {data['run_dir']}, "
            f"since {data['since']})"
        )
    except (ValueError, KeyError, TypeError):
        return _UNKNOWN_HOLDER


def _holder_of(path: Path) -> str:
    try:
        return describe(path.read_text(encoding="utf-8", errors="replace")[:4096])
    except OSError:
        return _UNKNOWN_HOLDER


@dataclass
class MeasuredWindow:
    """When the job's measured work ran, and how long it waited for the host before."""

    # seconds spent waiting for the lock; None when no lock was taken (host_lock=off)
    wait_s: float | None = None
    start: datetime | None = None
    end: datetime | None = None

    def columns(self) -> dict[str, Any]:
        return {"host_lock_wait_s": self.wait_s, "measured_start_at": self.start, "measured_end_at": self.end}


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _acquire(fd: int, mode: HostLock, path: Path, on_wait: Callable[[str], None]) -> float:
    """Take the lock on ``fd``; the seconds waited. ``fail``: refuse at once, naming the holder."""
    if _try_lock(fd):
        return 0.0
    holder = _holder_of(path)
    if mode is HostLock.FAIL:
        raise MeasurementError(
            f"host_lock=fail: the host lock {path} is held by {holder}; host_lock=wait queues behind it"
        )
    on_wait(f"waiting for the host lock held by {holder}")
    began = time.perf_counter()
    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks, using no CPU, until the holder ends
    return time.perf_counter() - began


@contextmanager
def hold_host(
    mode: HostLock, holder: Holder, window: MeasuredWindow, on_wait: Callable[[str], None]
) -> Iterator[MeasuredWindow]:
    """The host's measured-work lock held for the ``with`` block (none with ``off``).

    ``window`` gets the time waited and the block's start and end.

    Raises:
        MeasurementError: ``fail`` and another job holds the lock (its description in the message).
    """
    if mode is HostLock.OFF:
        window.start = datetime.now(UTC)
        try:
            yield window
        finally:
            window.end = datetime.now(UTC)
        return
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        window.wait_s = _acquire(fd, mode, path, on_wait)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.record().encode(), 0)
        window.start = datetime.now(UTC)
        try:
            yield window
        finally:
            window.end = datetime.now(UTC)
            fcntl.flock(fd, fcntl.LOCK_UN)  # released for every process that inherited the descriptor
    finally:
        os.close(fd)
