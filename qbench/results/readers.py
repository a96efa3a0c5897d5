"""Reading results files of every schema version this qbench knows.

A reader is keyed by the schema version written in the file
(``qbench.schema_version``): each upgrades a table of its version to the
current one, so a baseline written before a schema change can still be
compared with today's results. A version with no reader is refused with
the reason; nothing is guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from qbench.errors import ResultsError
from qbench.results.columns import COLUMNS, META_SCHEMA_VERSION, META_STATUS, SCHEMA_VERSION, Column

Upgrade = Callable[[pa.Table], pa.Table]


def _annotate(table: pa.Table) -> pa.Table:
    """Version 1 -> 2: the same columns, each field given its unit and doc from the registry."""
    fields = []
    for f in table.schema:
        column = COLUMNS.get(f.name) or Column(f.name, f.type, f"config value `{f.name}`")
        fields.append(column.field().with_type(f.type))
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


# schema version in the file -> the upgrade that makes it current
READERS: dict[str, Upgrade] = {
    "1": _annotate,
    SCHEMA_VERSION: lambda table: table,
}


def check_metadata(path: Path, raw: Mapping[bytes, bytes] | None) -> dict[str, str]:
    """The qbench entries of a file's key-value metadata, checked for a version qbench can read.

    Raises:
        ResultsError: not a qbench file, or one of a version with no reader.
    """
    meta = {k.decode(): v.decode() for k, v in (raw or {}).items() if k.startswith(b"qbench.")}
    version = meta.get(META_SCHEMA_VERSION)
    if version is None:
        raise ResultsError(f"{path}: not a qbench results file (no {META_SCHEMA_VERSION})")
    if version not in READERS:
        readable = ", ".join(sorted(READERS))
        raise ResultsError(f"{path}: schema version {version}, this qbench reads versions {readable}")
    return meta


def read_metadata(path: Path) -> dict[str, str]:
    """The qbench key-value metadata of a results file.

    Raises:
        ResultsError: not a Parquet file, or not a qbench file of a readable schema version.
    """
    try:
        raw = pq.read_schema(path).metadata
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"{path}: not a readable Parquet file ({exc})") from None
    return check_metadata(path, raw)


def job_state(meta: Mapping[str, str]) -> dict[str, Any]:
    """The job status stored in a file's metadata ({} when none was stored)."""
    status = json.loads(meta.get(META_STATUS, "{}") or "{}")
    return status if isinstance(status, dict) else {}


def read_table(path: Path) -> tuple[pa.Table, dict[str, str]]:
    """A results file's table, upgraded to the current schema, and its qbench metadata.

    Raises:
        ResultsError: unreadable, not qbench's, or of a version with no reader.
    """
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"{path}: not a readable Parquet file ({exc})") from None
    meta = check_metadata(path, parquet.schema_arrow.metadata)
    try:
        table = parquet.read()
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"{path}: unreadable ({exc})") from None
    return READERS[meta[META_SCHEMA_VERSION]](table), meta
