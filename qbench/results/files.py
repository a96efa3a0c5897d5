"""Reading files that may come from other machines: regular files only, bounded, never blocking.

A results directory copied from elsewhere may hold anything under a results
file's name: a FIFO (opening it for reading would wait for a writer forever),
a device, a directory, a symlink loop, or a file far larger than any results
file. :func:`read_regular` opens without blocking, checks that what it opened
is a regular file of a sane size, and only then reads it. :func:`one_line`
makes any text (an exception message, a reason recorded in a file) fit on
one line of a log or report.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from qbench.errors import UnreadableResultsError

# A metrics file holds one row per iteration: a few kilobytes to a few megabytes.
MAX_RESULTS_BYTES = 256 * 1024 * 1024
# job_status.json is a few hundred bytes.
MAX_STATUS_BYTES = 1024 * 1024
_MAX_REASON = 400
# Hydra's own directory in each job directory: the mark of a job, never searched for results.
HYDRA_DIR = ".hydra"


def absolute(path: Path) -> Path:
    """``path`` resolved; made absolute only when it cannot be resolved (a symlink loop, say)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def walk_dirs(root: Path) -> Iterator[tuple[Path, set[str]]]:
    """Each directory under ``root`` (itself included) with the names of its entries, in order.

    Symlinked directories are never entered (no loops), unreadable ones are passed over.
    """
    for top, dirs, files in os.walk(root, onerror=lambda _: None):
        yield Path(top), {*dirs, *files}
        dirs[:] = sorted(d for d in dirs if d != HYDRA_DIR)


def one_line(text: object, limit: int = _MAX_REASON) -> str:
    """``text`` on one line: control characters and line breaks become spaces, runs of them one."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


def read_regular(path: Path, limit: int = MAX_RESULTS_BYTES) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``limit`` bytes.

    Raises:
        UnreadableResultsError: not a regular file, too large, or the OS refuses to read it.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UnreadableResultsError(f"{path}: cannot open ({_os_reason(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableResultsError(f"{path}: not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UnreadableResultsError(f"{path}: {info.st_size:,} bytes, larger than {limit:,}")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise UnreadableResultsError(f"{path}: grew past {limit:,} bytes while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableResultsError(f"{path}: cannot read ({_os_reason(exc)})") from None
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    return exc.strerror or one_line(exc)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"
