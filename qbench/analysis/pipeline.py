"""The analysis pipeline: load a sweep, summarise, fit, recommend, compare, report.

Each step is a plain function over frames (:mod:`~qbench.analysis.summary`,
:mod:`~qbench.analysis.scaling`, :mod:`~qbench.analysis.recommend`,
:mod:`~qbench.analysis.comparisons`); this
module runs them in order and writes their tables and the report. Every
output goes to a scratch directory first and is moved into place only when
all of it succeeded: nothing is ever partially written. A write the OS
refuses (a full disk, a read-only directory) is one
:class:`~qbench.errors.ResultsWriteError` naming the directory and the real
reason; the scratch directory is removed and earlier outputs stay as they were.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qbench.analysis.comparisons import comparisons
from qbench.analysis.recommend import recommendations
from qbench.analysis.scaling import fitted_points, scaling_table
from qbench.analysis.summary import key_columns, measured, summarize
from qbench.analysis.sustainable import add_keep_up_share, sustainable_rates
from qbench.analysis.thresholds import Thresholds
from qbench.analysis.tiers import tiered
from qbench.errors import AggregateError
from qbench.report.document import write_report
from qbench.results.columns import METRICS_FILE
from qbench.results.load import Loaded, load_results
from qbench.results.writer import write_failure
from qbench.settings import Config, flatten


@dataclass
class Aggregated:
    out_dir: Path
    written: list[Path]
    loaded: Loaded
    summary: pd.DataFrame
    recommendations: pd.DataFrame


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path)


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no rows)\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            if isinstance(value, float):
                cells.append("" if np.isnan(value) else f"{value:.4g}")
            else:
                cells.append("" if value is None or value is pd.NA else str(value).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_recommendations(recs: pd.DataFrame) -> str:
    """The recommendations table; settings that hold one value in every row go on one line
    above it instead of a column each (a drain's rows need no workload.rate column)."""
    settings = set(flatten(Config()))
    shown = {c: ["null" if pd.isna(v) else str(v) for v in recs[c]] for c in recs.columns if c in settings}
    same = [c for c, values in shown.items() if len(set(values)) == 1]
    if recs.empty or not same:
        return _markdown_table(recs)
    common = ", ".join(f"{c}={shown[c][0]}" for c in same)
    return f"Every row: {common}\n\n" + _markdown_table(recs.drop(columns=same))


def _write_outputs(
    target: Path,
    tables: dict[str, pd.DataFrame],
    loaded: Loaded,
    sources: list[str],
    thresholds: Thresholds,
    fitted: pd.DataFrame,
    notes: Sequence[str] = (),
) -> list[Path]:
    """Write every output into a scratch directory in ``target``, then move each into place."""
    with tempfile.TemporaryDirectory(
        prefix=".qbench-aggregate-", dir=target, ignore_cleanup_errors=True
    ) as scratch_name:
        scratch = Path(scratch_name)
        for name, frame in tables.items():
            _write_parquet(frame, scratch / f"{name}.parquet")
        recs = tables["recommendations"]
        recs.to_csv(scratch / "recommendations.csv", index=False)
        (scratch / "recommendations.md").write_text(_markdown_recommendations(recs), encoding="utf-8")
        write_report(
            scratch,
            tables["summary"],
            tables["scaling"],
            recs,
            tables["comparisons"],
            skipped=loaded.skipped,
            jobs=loaded.jobs,
            sources=sources,
            thresholds=thresholds.as_dict(),
            fitted_points=fitted,
            notes=notes,
            sustainable=tables["sustainable_rates"],
            hosts=loaded.hosts,
        )
        written = []
        for produced in sorted(scratch.iterdir()):
            final = target / produced.name
            os.replace(produced, final)  # the same directory: an atomic rename
            written.append(final)
    return written


def aggregate(
    paths: Sequence[Path],
    out_dir: Path | None = None,
    thresholds: Thresholds | None = None,
    notes: Sequence[str] = (),
) -> Aggregated:
    """Load, summarise, fit, recommend, compare and report; write everything into ``out_dir``.

    ``notes`` go into the report's overview (a plan's skipped stages and why).

    Raises:
        AggregateError: no usable results (the reason names every skipped file and job).
        ResultsWriteError: the OS refused to write the outputs (disk full, read-only directory);
            nothing was written and earlier outputs are untouched.
    """

    thresholds = thresholds or Thresholds()
    if not paths:
        raise AggregateError("no directory given")
    loaded = load_results(paths)
    if loaded.frame.empty or measured(loaded.frame).empty:
        where = ", ".join(str(p) for p in paths)
        if loaded.skipped:
            reasons = "; ".join(f"{p}: {r}" for p, r in loaded.skipped)
            raise AggregateError(f"no usable results in {where} ({reasons})")
        raise AggregateError(f"no {METRICS_FILE} found in {where}")
    target = Path(out_dir) if out_dir is not None else Path(paths[0])
    if not target.is_dir():
        raise AggregateError(f"{target}: the output directory does not exist")

    frame = loaded.frame
    keys = key_columns(frame)
    summary = add_keep_up_share(frame, summarize(frame, thresholds), keys)
    rates = sustainable_rates(summary, keys, thresholds)
    scaling = scaling_table(frame, summary, keys)
    recs = recommendations(frame, summary, scaling, keys, thresholds)
    # four deployment tiers per group, development first (it holds the recommended config)
    recs = tiered(frame, summary, recs, rates, keys, thresholds)
    comps = comparisons(frame, summary, keys, thresholds)
    # The report draws the fitted curves from these points: it never evaluates a fit itself.
    fitted = fitted_points(summary, scaling, keys)

    # Everything goes to a scratch directory first: a failure leaves no partial output.
    tables = {"summary": summary, "scaling": scaling, "recommendations": recs, "comparisons": comps}
    tables["sustainable_rates"] = rates
    try:
        written = _write_outputs(target, tables, loaded, [str(p) for p in paths], thresholds, fitted, notes)
    except OSError as exc:
        raise write_failure(target, exc) from None
    return Aggregated(target, written, loaded, summary, recs)
