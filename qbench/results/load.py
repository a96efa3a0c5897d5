"""Loading the metrics files of sweeps into one frame; bad files are listed, never counted.

A file that is corrupt, truncated, of an unknown schema version, missing
columns, or from a failed job is left out with its reason. Results from
different hosts keep their ``host`` column, so nothing above pools them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from qbench.errors import AggregateError, ResultsError
from qbench.results.columns import IDENTITY_COLUMNS, MEASURE_COLUMNS, METRICS_FILE
from qbench.results.readers import job_state, read_table

IDENTITY = [c.name for c in IDENTITY_COLUMNS]
MEASURES = [c.name for c in MEASURE_COLUMNS]
REQUIRED = {*IDENTITY, *MEASURES, "workers"}


@dataclass
class Loaded:
    frame: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_metrics(paths: Sequence[Path]) -> list[Path]:
    """Every metrics.parquet under the given directories (a file path is taken as is).

    Raises:
        AggregateError: a path does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise AggregateError(f"{path}: no such file or directory")
        if path.is_file():
            found.append(path)
        else:
            found.extend(sorted(path.rglob(METRICS_FILE)))
    return sorted(dict.fromkeys(p.resolve() for p in found))


def read_job_table(path: Path) -> pa.Table:
    """One job's metrics, current schema, no file metadata.

    Raises:
        ResultsError: unreadable, not qbench's, from a failed job, or missing columns.
    """
    table, meta = read_table(path)
    status = job_state(meta)
    if status.get("status") not in (None, "ok"):
        raise ResultsError(f"job failed: {status.get('reason') or 'no reason recorded'}")
    missing = REQUIRED - set(table.column_names)
    if missing:
        raise ResultsError(f"missing columns: {', '.join(sorted(missing))}")
    return table.replace_schema_metadata(None)


def load_results(paths: Sequence[Path]) -> Loaded:
    """Read every metrics file under ``paths``; bad files are listed in ``skipped``, never counted."""
    files = find_metrics(paths)
    tables: list[pa.Table] = []
    loaded = Loaded(pd.DataFrame())

    def read(path: Path) -> pa.Table | str:
        try:
            return read_job_table(path)
        except ResultsError as exc:
            return str(exc).removeprefix(f"{path}: ")

    # pyarrow releases the GIL while it reads: a few threads overlap the per-file costs.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for path, result in zip(files, pool.map(read, files), strict=True):
            if isinstance(result, str):
                loaded.skipped.append((str(path), result))
            else:
                tables.append(result)
                loaded.files.append(path)
    if tables:
        loaded.frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    return loaded
