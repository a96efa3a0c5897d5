"""Resolving a stage: stage references replaced by what the upstream stage recommended.

A recommendation is read from the upstream's ``recommendations.parquet``
(results may come from another machine: only a plain value goes into a
command line), and ``${around:...}``/``${beyond:...}`` expand it to grid values.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from qbench.errors import PlanError
from qbench.plan.refs import Reference
from qbench.plan.safety import plain

# Recommendation fields that stand for a config key, for ${around:...} over the upstream grid.
FIELD_KEYS = {
    "best_workers": "workers",
    "knee_workers": "workers",
    "busy_onset_workers": "workers",
    "pool_connections": "pool.size",
    "busy_timeout_ms": "busy.timeout_ms",
    "claim_batch": "claim.batch",
}


@dataclass
class Resolved:
    # without hydra.sweep.dir: the runner sets it to the stage's directory (joined with `subdir`)
    overrides: list[str]
    grid: dict[str, list[str]]
    # references that could not be resolved yet (dry run): key -> text
    pending: dict[str, str]
    # a plan's own hydra.sweep.dir: a relative path inside the stage's run directory
    subdir: str = ""

    def jobs(self) -> int:
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 1


def fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@cache
def conf_digest() -> str:
    """A hash of qbench's config tree (conf/): a changed default changes every sweep's key."""
    from qbench.app.paths import conf_dir

    root = conf_dir()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def select(table: Any, column: str, wanted: str) -> Any:
    """The rows whose ``column`` holds ``wanted`` (numbers compared as numbers: 1 matches 1.0)."""
    import pandas as pd

    series = table[column]
    if pd.api.types.is_bool_dtype(series):
        return table[series == (wanted.lower() == "true")]
    if pd.api.types.is_numeric_dtype(series):
        try:
            return table[series == float(wanted)]
        except ValueError:
            return table.iloc[0:0]
    return table[series.astype(str) == wanted]


def read_recommendation(path: Path, ref: Reference) -> Any:
    """The value of ``ref.field`` in the best-throughput row (of those ``ref.where`` selects).

    Raises:
        PlanError: no file, not readable, no matching row, no value, or not a plain value.
    """
    import pandas as pd
    import pyarrow as pa

    if not path.exists():
        raise PlanError(f"{ref.text}: stage '{ref.stage}' left no recommendations ({path})")
    try:
        table = pd.read_parquet(path)
    except (OSError, pa.ArrowException) as exc:
        raise PlanError(f"{ref.text}: {path} is not readable ({exc})") from None
    if ref.where is not None:
        column, wanted = ref.where
        if column not in table.columns:
            raise PlanError(f"{ref.text}: recommendations have no column '{column}'")
        table = select(table, column, wanted)
    if table.empty or ref.field not in table.columns or "best_throughput_tps" not in table.columns:
        raise PlanError(f"{ref.text}: no recommendation row matches")
    row = table.loc[table["best_throughput_tps"].idxmax()]
    value = row[ref.field]
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        raise PlanError(f"{ref.text}: stage '{ref.stage}' found no value for {ref.field}")
    value = value.item() if hasattr(value, "item") else value
    numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not plain(fmt(value)) or (ref.expand and not numeric):
        raise PlanError(f"{ref.text}: stage '{ref.stage}' recommends {fmt(value)!r}, not a plain value")
    return value


def expand(ref: Reference, value: Any, upstream_grid: dict[str, list[str]]) -> list[str]:
    """The grid values a reference stands for: the value, or its around/beyond list."""
    if ref.expand == "beyond":
        return [fmt(value * k) for k in (1, 2, 4)]
    if ref.expand == "around":
        key = FIELD_KEYS.get(ref.field)
        points = sorted({int(float(v)) for v in (upstream_grid.get(key, []) if key else [])} | {int(value)})
        i = points.index(int(value))
        return [str(p) for p in points[max(0, i - 1) : i + 2]]
    return [fmt(value)]
