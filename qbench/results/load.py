"""Loading the metrics files of sweeps into one frame; bad files are listed, never counted.

A file that is not a regular file, corrupt, truncated, of an unknown schema
version, missing columns, of the wrong column types, holding a value no
statistic may take (see :mod:`qbench.results.validate`), from a failed job,
or a copy of a job already counted (same ``run_id`` and ``job_num``) is left
out with its reason. A job directory whose job did not finish ok is named
with the reason it recorded. Results from different hosts keep their
``host`` column, so nothing above pools them.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from qbench.errors import (
    AggregateError,
    JobFailedError,
    ResultsError,
    UnreadableResultsError,
)
from qbench.results.columns import IDENTITY_COLUMNS, MEASURE_COLUMNS, METRICS_FILE
from qbench.results.files import HYDRA_DIR, absolute, one_line, walk_dirs
from qbench.results.jobs import job_dirs, job_problem
from qbench.results.machine import Fact, HostFacts, by_host, machine_facts
from qbench.results.readers import job_state, read_table
from qbench.results.validate import check_values, conform, expected_fields

IDENTITY = [c.name for c in IDENTITY_COLUMNS]
MEASURES = [c.name for c in MEASURE_COLUMNS]
REQUIRED = {*IDENTITY, *MEASURES, "workers"}

Entry = tuple[str, str]
# Files read, checked and merged at a time (see load_results). Small batches keep few raw
# tables alive, and reading is faster with fewer alive (its allocations are cheaper).
READ_BATCH = 20


@dataclass
class Loaded:
    frame: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    # every file or job left out, with its one-line reason (each list below is a part of it)
    skipped: list[Entry] = field(default_factory=list)
    # jobs that failed, were interrupted or never finished: (job directory or file, reason)
    jobs: list[Entry] = field(default_factory=list)
    # files that cannot be read as qbench results at all (corrupt, foreign, wrong types, ...)
    unreadable: list[Entry] = field(default_factory=list)
    # copies of a job already counted
    duplicates: list[Entry] = field(default_factory=list)
    # each host's recorded machine facts (CPU, file system, fsync latency, SQLite), over its files
    hosts: dict[str, HostFacts] = field(default_factory=dict)

    def leave_out(self, path: Path, reason: str, kind: list[Entry] | None = None) -> None:
        entry = (one_line(path, 4096), one_line(reason.removeprefix(f"{path}: ")))
        self.skipped.append(entry)
        if kind is not None:
            kind.append(entry)


def find_metrics(paths: Sequence[Path]) -> list[Path]:
    """Every metrics.parquet under the given directories (a path that is no directory is taken as is).

    Whatever is named metrics.parquet is returned, a FIFO or a directory too: the
    reader refuses it with its reason. Symlinked directories are not entered; a file
    reached under two names is returned once (under the first, made absolute).

    Raises:
        AggregateError: a path does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise AggregateError(f"{one_line(path)}: no such file or directory")
        if path.is_dir():
            found.extend(d / METRICS_FILE for d, names in walk_dirs(path) if METRICS_FILE in names)
        else:
            found.append(path)
    unique: dict[Path, Path] = {}  # the same file under two names is read once
    for p in found:
        unique.setdefault(absolute(p), Path(os.path.abspath(p)))
    return sorted(unique.values())


def _job_status_problem(path: Path) -> None:
    """Refuse a file in a Hydra job directory whose job did not finish ok."""
    job_dir = path.parent
    if os.path.isdir(job_dir / HYDRA_DIR) and (problem := job_problem(job_dir)) is not None:
        raise JobFailedError(problem)


def _read_raw(path: Path) -> tuple[pa.Table, dict[str, str]]:
    """One job's table upgraded to the current schema, not yet conformed or checked, and its
    qbench metadata (what :func:`read_job_table` does before :func:`conform`)."""
    _job_status_problem(Path(path))
    table, meta = read_table(path)
    status = job_state(meta)
    state = status.get("status")
    if state not in (None, "ok"):
        reason = one_line(status.get("reason") or "") or "no reason recorded"
        ended = state if state in ("failed", "interrupted") else f"ended with status {one_line(state, 40)}"
        raise JobFailedError(f"job {ended}: {reason}")
    missing = REQUIRED.difference(table.schema.names)
    if missing:
        raise UnreadableResultsError(f"missing columns: {', '.join(sorted(missing))}")
    return table, meta


def read_job_table(path: Path) -> pa.Table:
    """One job's metrics, checked and cast to the current schema, no file metadata.

    Raises:
        UnreadableResultsError: not a regular file, unreadable, not qbench's, missing columns,
            or columns of the wrong type.
        JobFailedError: the job failed, was interrupted, or (in a Hydra job directory)
            did not finish ok.
        BadValueError: a value no statistic may take (see :mod:`qbench.results.validate`).
    """
    table = conform(_read_raw(path)[0])
    check_values(table)
    return table


Read = tuple[pa.Table, dict[str, Fact]] | ResultsError


def _unreadable(exc: Exception) -> ResultsError:
    return UnreadableResultsError(f"unreadable ({type(exc).__name__}: {one_line(exc, 200)})")


def _read(path: Path) -> Read:
    """A file's raw table and machine facts, or why it is left out."""
    try:
        table, meta = _read_raw(path)
        return table, machine_facts(meta)
    except ResultsError as exc:
        return exc
    except Exception as exc:  # a file from elsewhere never crashes aggregation: it is left out
        return _unreadable(exc)


def _check_one(table: pa.Table) -> pa.Table | ResultsError:
    try:
        conformed = conform(table)
        check_values(conformed)
        return conformed
    except ResultsError as exc:
        return exc
    except Exception as exc:  # a file from elsewhere never crashes aggregation: it is left out
        return _unreadable(exc)


def _check_together(tables: list[pa.Table]) -> tuple[pa.Table, list[pa.Table]] | None:
    """Tables of one signature conformed and checked as one, and that table sliced apart; None
    when any problem shows (each table is then checked alone, for its own reason).

    Every check of :func:`check_values` holds row by row, except two: an iteration repeated
    (checked on all rows together, it also catches one repeated across files, a superset)
    and a table without a measured row (counted per table here).
    """
    try:
        # one chunk per column first: the checks then take one array each, not one per file,
        # and the slices below share that chunk (slicing costs nothing)
        whole = conform(pa.concat_tables(tables).combine_chunks())
        check_values(whole)
    except Exception:  # the slow path finds and names the problem
        return None
    lengths = [t.num_rows for t in tables]
    measured = np.asarray(whole.column("phase").to_numpy(zero_copy_only=False) == "measure")
    starts = np.cumsum([0, *lengths[:-1]])
    if min(lengths) == 0 or (np.add.reduceat(measured, starts) == 0).any():
        return None
    return whole, [whole.slice(start, length) for start, length in zip(starts, lengths, strict=True)]


def _checked(raw: list[pa.Table | ResultsError]) -> tuple[list[pa.Table | ResultsError], pa.Table | None]:
    """Each table conformed and checked (:func:`conform`, :func:`check_values`), or its problem;
    and, when all of them were checked together, the one table they are slices of.

    Files written by one qbench share their columns and types: such tables are checked
    together, in one pass over their rows, and only a group with a problem file by file.
    """
    out = list(raw)
    whole = None
    # tables by schema (names, types, nullability; field metadata aside), compared in Arrow
    groups: list[tuple[pa.Schema, list[tuple[int, pa.Table]]]] = []
    for i, table in enumerate(raw):
        if isinstance(table, pa.Table):
            same = next((members for schema, members in groups if schema.equals(table.schema)), None)
            if same is None:
                groups.append((table.schema, same := []))
            same.append((i, table))
    for _, members in groups:
        tables = [table for _, table in members]
        together = _check_together(tables) if len(tables) > 1 else None
        checked: list[pa.Table | ResultsError] = (
            [*together[1]] if together else [_check_one(t) for t in tables]
        )
        for (i, _), table in zip(members, checked, strict=True):
            out[i] = table
        if together and len(members) == len(raw):
            whole = together[0]
    return out, whole


class _Merger:
    """The accepted tables, each job counted once, extra columns of one type across files."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        # (run_id, job_num) -> the file it came from and its (phase, iteration) rows
        self.owners: dict[tuple[object, object], tuple[Path, frozenset[tuple[object, object]]]] = {}
        # a column qbench does not know -> its type and the file that set it
        self.extra: dict[str, tuple[pa.DataType, Path]] = {}
        # schemas (names and types) whose tables unify left as they were: so will it every other
        self.unchanged: list[pa.Schema] = []

    def duplicate(self, path: Path, table: pa.Table) -> str | None:
        """Why ``table`` repeats a job already counted, or None."""
        rows: dict[tuple[object, object], set[tuple[object, object]]] = {}
        for r in table.select(["run_id", "job_num", "phase", "iteration"]).to_pylist():
            rows.setdefault((r["run_id"], r["job_num"]), set()).add((r["phase"], r["iteration"]))
        for (run_id, job_num), own in sorted(rows.items(), key=str):
            if (run_id, job_num) in self.owners:
                other, theirs = self.owners[(run_id, job_num)]
                same = "the same iteration rows" if own == theirs else "other iteration rows"
                ident = f"run_id {one_line(run_id, 80)} and job_num {job_num}"
                return f"duplicate of {other}: same {ident}, {same}"
        for key, own in rows.items():
            self.owners[key] = (path, frozenset(own))
        return None

    def forget(self, path: Path) -> None:
        """``path`` was left out after all: the jobs it claimed are free for a later copy."""
        for key in [k for k, (owner, _) in self.owners.items() if owner == path]:
            del self.owners[key]

    def unify(self, path: Path, table: pa.Table) -> pa.Table:
        """``table`` with its extra columns cast to the type the first file gave them.

        Raises:
            UnreadableResultsError: an extra column whose values do not fit that type.
        """
        schema = table.schema
        if any(schema.equals(plain) for plain in self.unchanged):
            return table
        original, known = table, expected_fields()
        for entry in schema:
            name = entry.name
            if name in known or pa.types.is_null(entry.type):
                continue
            column = table.column(name)
            seen = self.extra.setdefault(name, (column.type, path))
            if seen[0].equals(column.type):
                continue
            try:
                table = table.set_column(
                    table.column_names.index(name), pa.field(name, seen[0]), column.cast(seen[0])
                )
            except (pa.ArrowException, ValueError, OverflowError):
                raise UnreadableResultsError(
                    f"column {one_line(name, 80)} has type {column.type} here, {seen[0]} in {seen[1]}"
                ) from None
        if table is original and len(self.unchanged) < 16:
            self.unchanged.append(schema)
        return table

    def compact(self, first: int, whole: pa.Table | None = None, parts: Sequence[object] = ()) -> None:
        """The tables from ``first`` on as one table of one chunk: one set of arrays, not one per
        file. Tables that do not combine stay as they are (:meth:`frame` says why).

        ``whole`` is the table ``parts`` are slices of, in order: when the tables from ``first``
        on are those very parts, they are ``whole``, taken as it is (no copy).
        """
        added = self.tables[first:]
        if whole is not None and len(added) == len(parts) and all(map(operator.is_, added, parts)):
            self.tables[first:] = [whole]
        elif len(added) > 1:
            try:
                whole = pa.concat_tables(self.tables[first:], promote_options="default").combine_chunks()
            except (pa.ArrowException, ValueError, OverflowError):
                return
            self.tables[first:] = [whole]

    def frame(self) -> pd.DataFrame:
        if not self.tables:
            return pd.DataFrame()
        try:
            return pa.concat_tables(self.tables, promote_options="default").combine_chunks().to_pandas()
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            raise AggregateError(f"the results files cannot be combined ({one_line(exc, 200)})") from None


def _job_problems(paths: Sequence[Path], loaded: Loaded) -> set[Path]:
    """List every Hydra job under ``paths`` that did not finish ok; return their directories."""
    bad = set()
    for job_dir in job_dirs(paths):
        problem = job_problem(job_dir)
        if problem is not None:
            loaded.leave_out(job_dir, problem, loaded.jobs)
            bad.add(job_dir)
    return bad


def _accept(loaded: Loaded, merger: _Merger, path: Path, result: pa.Table | ResultsError) -> bool:
    """Count one file's table, or list the file with the reason it is left out; whether counted."""
    kinds = {UnreadableResultsError: loaded.unreadable, JobFailedError: loaded.jobs}
    if isinstance(result, ResultsError):
        loaded.leave_out(path, str(result), kinds.get(type(result)))
        return False
    try:
        copy = merger.duplicate(path, result)
        if copy is not None:
            loaded.leave_out(path, copy, loaded.duplicates)
            return False
        merger.tables.append(merger.unify(path, result))
    except UnreadableResultsError as exc:
        merger.forget(path)
        loaded.leave_out(path, str(exc), loaded.unreadable)
        return False
    except Exception as exc:  # a file from elsewhere never crashes aggregation: it is left out
        merger.forget(path)
        loaded.leave_out(path, f"unreadable ({type(exc).__name__}: {one_line(exc, 200)})", loaded.unreadable)
        return False
    loaded.files.append(path)
    return True


def _read_ahead(pool: Executor, files: list[Path]) -> Iterator[tuple[list[Path], list[Read]]]:
    """Each batch of ``files`` with what reading it gave, in order.

    A batch at a time: a file's table as read holds far more memory than its rows (its own
    schema, one array per column), so only two batches of them live at once. The next batch
    is already being read by the pool (outside the GIL, mostly) while the caller checks this
    one together into one compact table (see :func:`_checked`) and drops its raw tables.
    """
    batches = [files[start : start + READ_BATCH] for start in range(0, len(files), READ_BATCH)]
    ahead = [pool.submit(_read, path) for path in batches[0]] if batches else []
    for i, batch in enumerate(batches):
        current = ahead
        ahead = [pool.submit(_read, path) for path in batches[i + 1]] if i + 1 < len(batches) else []
        yield batch, [future.result() for future in current]


def load_results(paths: Sequence[Path]) -> Loaded:
    """Read every metrics file under ``paths``; bad files and jobs are listed in ``skipped``, never counted.

    Raises:
        AggregateError: a path does not exist.
    """
    files = find_metrics(paths)
    loaded = Loaded(pd.DataFrame())
    bad_jobs = _job_problems(paths, loaded)
    if bad_jobs:
        files = [f for f in files if absolute(f.parent) not in bad_jobs]  # listed once, as its job
    merger = _Merger()
    counted = []
    # pyarrow releases the GIL while it reads: a few threads overlap the per-file costs.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch, read in _read_ahead(pool, files):
            facts = [r[1] if isinstance(r, tuple) else {} for r in read]
            checked, whole = _checked([r[0] if isinstance(r, tuple) else r for r in read])
            del read
            first = len(merger.tables)
            for path, result, own in zip(batch, checked, facts, strict=True):
                if _accept(loaded, merger, path, result):
                    assert isinstance(result, pa.Table)
                    counted.append((set(result.column("host").to_pylist()), own))
            merger.compact(first, whole, checked)
    loaded.hosts = by_host(counted)
    loaded.frame = merger.frame()
    for entries in (loaded.skipped, loaded.jobs, loaded.unreadable, loaded.duplicates):
        entries.sort()
    return loaded
