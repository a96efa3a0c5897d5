"""Checking a job's table before any of it is counted: column types, identities, values.

A results file may come from another machine, another qbench, or a hand: it
is counted only when every column has the type the registry (or, for config
columns, the current config) gives it, every row says which run, job and
iteration it is, and every value a statistic takes is one it may take. The
first problem found is the reason the file is left out, in one line.

- :func:`conform` casts each column to its registry type (an int column into
  a float one, say) and refuses a column that does not fit (strings where
  numbers belong, a list, a map): :class:`~qbench.errors.UnreadableResultsError`.
- :func:`check_values` refuses a file whose measured throughput is missing,
  NaN, infinite or negative, whose other measurements are infinite,
  negative or absurdly large (above :data:`MAX_BY_UNIT` for their unit:
  1e9 s, 1e12 ms, 1e12 tasks/s, ...; counts and bytes above 2**53), whose
  rows lack an identity or repeat an iteration, or that holds no measured
  iteration: :class:`~qbench.errors.BadValueError`.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from qbench.errors import BadValueError, UnreadableResultsError
from qbench.results.columns import IDENTITY_COLUMNS, MEASURE_COLUMNS, metrics_schema
from qbench.results.files import one_line
from qbench.settings import Config, flatten

PHASES = ("warmup", "measure")
# Counts and byte sizes beyond 2**53 are not measurements (and lose precision as floats).
MAX_COUNT = 2**53
# The largest value a float measurement may take, by its unit: beyond these it is no measurement
# (1e9 s is 31 years); ratios without a unit (busy_rate, harness_efficiency) take the default.
MAX_BY_UNIT = {
    "s": 1e9,
    "ms": 1e12,
    "us": 1e15,
    "tasks/s": 1e12,
    "tasks/s per worker": 1e12,
    "cores": 1e6,
}
MAX_UNITLESS = 1e12
# Names the summary and report give their own columns: a column of a results file may not take them.
RESERVED = frozenset({"config_id", "jobs", "noisy"})
RESERVED_SUFFIXES = ("_median", "_mean", "_stdev", "_ci_low", "_ci_high", "_cv", "_total")
# pandas holds timestamps as int64 nanoseconds: started_at must fit (years 1678 to 2261).
_TS_MIN_US, _TS_MAX_US = -(2**63) // 1000 + 1, (2**63 - 1) // 1000


@functools.cache
def expected_fields() -> dict[str, pa.Field]:
    """Every column qbench knows: identity, current config columns, measurements."""
    return {f.name: f for f in metrics_schema(flatten(Config()))}


def _base(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _scalar(t: pa.DataType) -> bool:
    t = _base(t)
    return any(
        check(t)
        for check in (
            pa.types.is_null,
            pa.types.is_boolean,
            pa.types.is_integer,
            pa.types.is_floating,
            pa.types.is_string,
            pa.types.is_large_string,
        )
    )


def _fits(actual: pa.DataType, target: pa.DataType) -> bool:
    """Whether a column of type ``actual`` may be cast to ``target`` without changing its meaning."""
    a = _base(actual)
    if pa.types.is_null(a):
        return True
    if pa.types.is_floating(target):
        return bool(pa.types.is_floating(a) or pa.types.is_integer(a))
    if pa.types.is_integer(target):
        return bool(pa.types.is_integer(a))
    if pa.types.is_string(target):
        return bool(pa.types.is_string(a) or pa.types.is_large_string(a))
    if pa.types.is_timestamp(target):
        return bool(pa.types.is_timestamp(a))
    return bool(a.equals(target))


def _unknown_field(field: pa.Field) -> pa.Field:
    name = field.name
    if name in RESERVED or name.endswith(RESERVED_SUFFIXES):
        raise UnreadableResultsError(f"column {one_line(name, 80)} is not qbench's and its name is reserved")
    if not _scalar(field.type):
        raise UnreadableResultsError(
            f"column {one_line(name, 80)} has type {field.type}: not a number, string or flag"
        )
    base = _base(field.type)
    return pa.field(name, pa.string() if pa.types.is_large_string(base) else base)


@functools.lru_cache(maxsize=256)
def _conform_plan(signature: tuple[tuple[str, pa.DataType], ...]) -> tuple[pa.Schema, tuple[int, ...]]:
    """For columns of these names and types: the schema they conform to, and which need a cast.

    Files written by one qbench share one signature, so each is worked out once.

    Raises:
        UnreadableResultsError: duplicate column names, or a column whose type does not fit.
    """
    names = [name for name, _ in signature]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UnreadableResultsError(f"duplicate columns: {one_line(', '.join(twice), 200)}")
    known = expected_fields()
    fields, casts = [], []
    for position, (name, actual) in enumerate(signature):
        target = known.get(name)
        if target is None:
            target = _unknown_field(pa.field(name, actual))
        elif not _fits(actual, target.type):
            raise UnreadableResultsError(f"column {name} has type {actual}, expected {target.type}")
        if not actual.equals(target.type):
            casts.append(position)
        fields.append(target)
    return pa.schema(fields), tuple(casts)


def conform(table: pa.Table) -> pa.Table:
    """``table`` with every column cast to its expected type and field metadata of the registry.

    Raises:
        UnreadableResultsError: duplicate column names, or a column whose type does not fit.
    """
    schema, casts = _conform_plan(tuple((f.name, f.type) for f in table.schema))
    columns = list(table.columns)
    for position in casts:  # a column already of its type needs no cast
        field = schema.field(position)
        try:
            columns[position] = columns[position].cast(field.type)
        except (pa.ArrowException, ValueError, OverflowError) as exc:
            raise UnreadableResultsError(
                f"column {field.name}: values do not fit {field.type} ({one_line(exc, 160)})"
            ) from None
    conformed = pa.Table.from_arrays(columns, schema=schema)
    try:  # Parquet does not check that strings are UTF-8, say; Arrow does, here
        conformed.validate(full=True)
    except (pa.ArrowException, ValueError) as exc:
        raise UnreadableResultsError(f"invalid column data ({one_line(exc, 160)})") from None
    return conformed


def _refuse(table: pa.Table, name: str, bad: NDArray[np.bool_], rule: str) -> None:
    """Raise for the first row where ``bad`` holds, naming its value and iteration."""
    if bad.any():
        at = int(np.argmax(bad))
        value = table.column(name)[at].as_py()
        shown = "null" if value is None else one_line(value, 60)
        iteration = table.column("iteration")[at].as_py()
        raise BadValueError(f"bad value: {name}={shown} in iteration {iteration} ({rule})")


def _check_identity(table: pa.Table) -> NDArray[np.bool_]:
    """Identities present, phases known, each (run_id, job_num, iteration) once; the measured-row mask."""
    for column in IDENTITY_COLUMNS:
        nulls = table.column(column.name).null_count
        if column.name != "started_at" and nulls:
            raise BadValueError(f"{column.name} is missing in {nulls} row(s)")
    phase = table.column("phase").to_pylist()
    unknown = sorted(set(phase) - set(PHASES))
    if unknown:
        raise BadValueError(f"phase {one_line(repr(unknown[0]), 60)} is neither warmup nor measure")
    seen: set[tuple[object, ...]] = set()
    for key in zip(*(table.column(k).to_pylist() for k in ("run_id", "job_num", "iteration")), strict=True):
        if key in seen:
            run_id, job_num, iteration = key
            raise BadValueError(
                f"iteration {iteration} of run_id {one_line(run_id, 60)} job_num {job_num} appears twice"
            )
        seen.add(key)
    measured = np.array([p == "measure" for p in phase], dtype=bool)
    if not measured.any():
        raise BadValueError("no measured iteration (only warmup rows)")
    return measured


def _floats(table: pa.Table, name: str) -> NDArray[np.float64]:
    """A column as floats, nulls as NaN."""
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=float)


def _check_throughput(table: pa.Table, measured: NDArray[np.bool_]) -> None:
    tps = _floats(table, "throughput_tps")
    with np.errstate(invalid="ignore"):
        bad = measured & ~(np.isfinite(tps) & (tps >= 0))
    _refuse(table, "throughput_tps", bad, "a measured throughput must be a finite number >= 0")


def _check_measurements(table: pa.Table) -> None:
    """Floats finite (or missing), >= 0 and at most their unit's bound; counts in [0, 2**53]; workers >= 1."""
    for column in MEASURE_COLUMNS:
        if pa.types.is_floating(column.type):
            values = _floats(table, column.name)
            with np.errstate(invalid="ignore"):
                bad = np.isinf(values) | (values < 0)
                _refuse(table, column.name, bad, "must be finite and >= 0")
                high = MAX_BY_UNIT.get(column.unit, MAX_UNITLESS)
                shown = f"{high:g} {column.unit}".rstrip()
                _refuse(table, column.name, values > high, f"above {shown}: not a measurement")
    limits = {c.name: (0, MAX_COUNT) for c in MEASURE_COLUMNS if pa.types.is_integer(c.type)}
    limits |= {"job_num": (0, MAX_COUNT), "iteration": (0, MAX_COUNT), "workers": (1, MAX_COUNT)}
    for name, (low, high) in limits.items():
        counts = np.asarray(pc.fill_null(table.column(name), low).to_numpy(), dtype=np.int64)
        _refuse(table, name, (counts < low) | (counts > high), f"must be in [{low}, 2**53]")


def _check_started_at(table: pa.Table) -> None:
    micros = table.column("started_at").cast(pa.int64())
    low, high = pc.min_max(micros).values()
    if (low.as_py() is not None and low.as_py() < _TS_MIN_US) or (
        high.as_py() is not None and high.as_py() > _TS_MAX_US
    ):
        raise BadValueError("bad value: started_at outside the years 1678 to 2261")


def check_values(table: pa.Table) -> None:
    """Refuse a conformed table with a value no statistic may take.

    Raises:
        BadValueError: the first problem found, in one line.
    """
    measured = _check_identity(table)
    _check_throughput(table, measured)
    _check_measurements(table)
    _check_started_at(table)
