"""The one atomic writer: every file qbench writes goes through :func:`write_atomic`.

A file is written to a temporary file in the same directory, given the mode
a plainly created file would have, then moved into place in one step:
``os.link`` when an existing file must never be replaced (results), or
``os.replace`` when the file is a status that a re-run updates. A reader
never sees half a file, and a failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qbench.errors import ResultsError

if TYPE_CHECKING:
    import pyarrow as pa

# mkstemp creates files readable by their owner only; results follow the user's umask instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, write: Callable[[Path], object], *, replace: bool) -> Path:
    """Write ``path`` through ``write(temporary_path)``, atomically.

    Args:
        path: the file to create.
        write: writes the whole content to the path it is given.
        replace: replace an existing file (statuses, reports); False never replaces one.

    Raises:
        ResultsError: ``replace`` is False and ``path`` already exists.
    """
    path = Path(path)
    if not replace and path.exists():
        raise ResultsError(f"{path} already exists; qbench never overwrites results")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
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
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes(path: Path, data: bytes, *, replace: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), replace=replace)


def write_new_file(path: Path, table: pa.Table) -> Path:
    """Write a Parquet table atomically, never replacing an existing file.

    Raises:
        ResultsError: ``path`` already exists.
    """
    import pyarrow.parquet as pq  # statuses and reports are written without loading Arrow

    return write_atomic(path, lambda tmp: pq.write_table(table, tmp), replace=False)
