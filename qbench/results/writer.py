"""The one atomic writer: every file qbench writes goes through :func:`write_atomic`.

A file is written to a temporary file in the same directory, given the mode
a plainly created file would have, then moved into place in one step:
``os.link`` when an existing file must never be replaced (results), or
``os.replace`` when the file is a status that a re-run updates. A reader
never sees half a file, and a failed write leaves nothing behind: no
temporary file, and the file it would have replaced untouched. The OS error
that stopped it (a full disk, a read-only directory) is raised as a
one-line :class:`~qbench.errors.ResultsWriteError` naming the path, never
hidden by the clean-up.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from qbench.errors import ResultsError, ResultsWriteError

if TYPE_CHECKING:
    import pyarrow as pa

# mkstemp creates files readable by their owner only; results follow the user's umask instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_failure(path: Path, exc: OSError) -> ResultsWriteError:
    """The one-line error for an OS error that stopped writing ``path`` (its ``errno`` kept)."""
    reason = getattr(exc, "reason", None) or (
        os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split()) or type(exc).__name__
    )
    error = ResultsWriteError(f"cannot write {path}: {reason}")
    error.errno, error.reason = exc.errno, reason
    return error


def write_atomic(path: Path, write: Callable[[Path], object], *, replace: bool) -> Path:
    """Write ``path`` through ``write(temporary_path)``, atomically.

    Args:
        path: the file to create.
        write: writes the whole content to the path it is given.
        replace: replace an existing file (statuses, reports); False never replaces one.

    Raises:
        ResultsError: ``replace`` is False and ``path`` already exists.
        ResultsWriteError: the OS refused the write (``errno`` kept: ENOSPC, EROFS, EACCES, ...);
            no temporary file is left and an existing ``path`` is untouched.
    """
    path = Path(path)
    if not replace and os.path.lexists(path):
        raise ResultsError(f"{path} already exists; qbench never overwrites results")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_failure(path, exc) from None
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile; rename would replace it
            except FileExistsError:
                raise ResultsError(f"{path} already exists; qbench never overwrites results") from None
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        with suppress(OSError):  # the clean-up never hides the error that stopped the write
            tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: Path, data: bytes, *, replace: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), replace=replace)


def write_new_file(path: Path, table: pa.Table) -> Path:
    """Write a Parquet table atomically, never replacing an existing file.

    Raises:
        ResultsError: ``path`` already exists.
        ResultsWriteError: the OS refused the write (see :func:`write_atomic`).
    """
    import pyarrow.parquet as pq  # statuses and reports are written without loading Arrow

    return write_atomic(path, lambda tmp: pq.write_table(table, tmp), replace=False)
