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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qbench.errors import UnreadableResultsError
from qbench.results.columns import (
    COLUMNS,
    META_SCHEMA_VERSION,
    META_STATUS,
    SCHEMA_VERSION,
    Column,
    arrow_type,
)
from qbench.results.files import MAX_STATUS_BYTES, one_line, read_regular
from qbench.settings import Config, flatten

Upgrade = Callable[[pa.Table], pa.Table]

# Far above what any job writes (a hundred columns, one row per iteration), far below a hang.
MAX_COLUMNS = 2_000
MAX_ROWS = 1_000_000
MAX_TABLE_BYTES = 1024 * 1024 * 1024


def _annotate(table: pa.Table) -> pa.Table:
    """Version 1 -> 2: the same columns, each field given its unit and doc from the registry."""
    fields = []
    for f in table.schema:
        column = COLUMNS.get(f.name) or Column(f.name, f.type, f"config value `{f.name}`")
        fields.append(column.field().with_type(f.type))
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


# Settings that version 3 added, as they held before they could be set: no host lock existed.
_BEFORE_V3 = {"host_lock": "off"}


def _settings_of_v3(table: pa.Table) -> pa.Table:
    """Version 2 -> 3: the settings version 3 added become columns holding what held before
    (fixed service times, no kills, no worker processes, the drain workload, no host lock),
    so an old baseline still compares key by key with new results. The new measurement
    columns (open loop, worker processes, host lock) are optional and stay absent."""
    defaults = {**flatten(Config()), **_BEFORE_V3}
    for name, value in defaults.items():
        if name not in table.column_names:
            column = Column(name, arrow_type(value), f"config value `{name}`")
            table = table.append_column(column.field(), pa.array([value] * table.num_rows, column.type))
    return table


def _measures_of_v4(table: pa.Table) -> pa.Table:
    """Version 3 -> 4: no lock-wait p99.9 was taken and the ceiling ran once per job (one repeat,
    no spread), as the columns version 4 added now say."""
    rows = table.num_rows
    if "lock_wait_p999_ms" not in table.column_names:
        table = table.append_column(COLUMNS["lock_wait_p999_ms"].field(), pa.nulls(rows, pa.float64()))
    if "ceiling_repeats" not in table.column_names:
        measured = table.column("ceiling_tps").is_valid() if "ceiling_tps" in table.column_names else None
        once = pc.if_else(measured, 1, None) if measured is not None else pa.nulls(rows, pa.int64())
        table = table.append_column(COLUMNS["ceiling_repeats"].field(), once.cast(pa.int64()))
    if "ceiling_tps_spread" not in table.column_names:
        table = table.append_column(COLUMNS["ceiling_tps_spread"].field(), pa.nulls(rows, pa.float64()))
    return table


# schema version in the file -> the upgrade that makes it current
READERS: dict[str, Upgrade] = {
    "1": lambda table: _measures_of_v4(_settings_of_v3(_annotate(table))),
    "2": lambda table: _measures_of_v4(_settings_of_v3(table)),
    # version 4 also added the settings queue.target and queue.delivery (null, at_least_once)
    "3": lambda table: _measures_of_v4(_settings_of_v3(table)),
    SCHEMA_VERSION: lambda table: table,
}


def _decode(path: Path, key: bytes, value: bytes) -> tuple[str, str]:
    try:
        return key.decode("utf-8"), value.decode("utf-8")
    except UnicodeDecodeError:
        name = one_line(key.decode("utf-8", errors="replace"))
        raise UnreadableResultsError(f"{path}: metadata entry {name} is not valid UTF-8") from None


def check_metadata(path: Path, raw: Mapping[bytes, bytes] | None) -> dict[str, str]:
    """The qbench entries of a file's key-value metadata, checked for a version qbench can read.

    Raises:
        UnreadableResultsError: not a qbench file, one of a version with no reader, or
            qbench metadata that is not valid UTF-8.
    """
    meta = dict(_decode(path, k, v) for k, v in (raw or {}).items() if k.startswith(b"qbench."))
    version = meta.get(META_SCHEMA_VERSION)
    if version is None:
        raise UnreadableResultsError(f"{path}: not a qbench results file (no {META_SCHEMA_VERSION})")
    if version not in READERS:
        readable = ", ".join(sorted(READERS))
        raise UnreadableResultsError(
            f"{path}: schema version {one_line(version, 40)}, this qbench reads versions {readable}"
        )
    return meta


def _open(path: Path) -> pq.ParquetFile:
    """The Parquet file at ``path``, read whole from a regular file (never a FIFO or device)."""
    data = read_regular(path)
    try:
        return pq.ParquetFile(pa.BufferReader(data))
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise UnreadableResultsError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None


def read_metadata(path: Path) -> dict[str, str]:
    """The qbench key-value metadata of a results file.

    Raises:
        UnreadableResultsError: not a regular Parquet file, or not a qbench file of a readable
            schema version.
    """
    parquet = _open(path)
    try:
        raw = parquet.schema_arrow.metadata
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise UnreadableResultsError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None
    return check_metadata(path, raw)


def job_state(meta: Mapping[str, str]) -> dict[str, Any]:
    """The job status stored in a file's metadata ({} when none was stored).

    Raises:
        UnreadableResultsError: a stored status that is not a JSON object.
    """
    text = meta.get(META_STATUS, "") or "{}"
    try:
        status = json.loads(text) if len(text) <= MAX_STATUS_BYTES else None
    except (ValueError, RecursionError):
        status = None
    if not isinstance(status, dict):
        raise UnreadableResultsError(f"the job status in the metadata ({META_STATUS}) is not a JSON object")
    return status


def _check_size(path: Path, parquet: pq.ParquetFile) -> None:
    meta = parquet.metadata
    if meta.num_columns > MAX_COLUMNS:
        raise UnreadableResultsError(f"{path}: {meta.num_columns:,} columns, more than {MAX_COLUMNS:,}")
    if meta.num_rows > MAX_ROWS:
        raise UnreadableResultsError(f"{path}: {meta.num_rows:,} rows, more than {MAX_ROWS:,}")
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > MAX_TABLE_BYTES:
        raise UnreadableResultsError(f"{path}: {size:,} bytes uncompressed, more than {MAX_TABLE_BYTES:,}")


def read_table(path: Path) -> tuple[pa.Table, dict[str, str]]:
    """A results file's table, upgraded to the current schema, and its qbench metadata.

    Raises:
        UnreadableResultsError: not a regular file, unreadable, not qbench's, too large, or of a
            version with no reader.
    """
    parquet = _open(path)
    try:
        # the file's key-value metadata: what the Arrow schema's would be, without decoding that
        # schema a second time (the reader decoded it on opening the file)
        meta = check_metadata(path, parquet.metadata.metadata)
        _check_size(path, parquet)
        table = parquet.read(use_threads=False)  # small files: threads cost more than they save
        return READERS[meta[META_SCHEMA_VERSION]](table), meta
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise UnreadableResultsError(f"{path}: unreadable ({one_line(exc)})") from None
