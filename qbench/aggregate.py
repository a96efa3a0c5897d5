"""Aggregate sweeps: load every job's metrics, summarise per config, fit, recommend, report.

    python -m qbench.aggregate DIR [DIR ...] [--out OUT] [--knee-fraction 0.95] ...

A DIR may be a sweep, a single job, or a folder holding several sweeps. A
file that is corrupt, truncated, from another schema version, missing
columns, or from a failed job is reported by path with the reason and left
out; it never crashes the aggregation and never silently counts. Results
from different hosts are never pooled. Every output is written to a
temporary directory first and moved into place only when all of it
succeeded: nothing is ever partially written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qbench.analysis import bootstrap_median_ci, cv
from qbench.errors import QbenchError, ResultsError
from qbench.results import IDENTITY_COLUMNS, MEASURE_COLUMNS, META_STATUS, METRICS_FILE, check_metadata

IDENTITY = [c.name for c in IDENTITY_COLUMNS]
MEASURES = [c.name for c in MEASURE_COLUMNS]
REQUIRED = {*IDENTITY, *MEASURES, "workers"}
# Harness settings: they do not change what is measured, so they do not tell configs apart.
NOT_A_KEY = {
    "db_keep",
    "metrics_sample_interval_ms",
    "ceiling_enabled",
    "ceiling_tasks",
    "iteration_timeout_s",
    "iterations",
    "warmup",
}
MEDIAN_COLUMNS = (
    "efficiency_tps_per_worker",
    "harness_efficiency",
    "ceiling_tps",
    "e2e_latency_p50_ms",
    "e2e_latency_p95_ms",
    "e2e_latency_p99_ms",
    "claim_latency_p99_ms",
    "busy_rate",
    "retries",
    "lock_wait_total_s",
    "pool_wait_total_s",
    "cpu_util_cores",
    "rss_peak_bytes",
    "duration_s",
    "pool_connections",
)
OUTPUT_FILES = (
    "summary.parquet",
    "scaling.parquet",
    "recommendations.parquet",
    "recommendations.csv",
    "recommendations.md",
    "comparisons.parquet",
    "report.md",
    "report.html",
)


class AggregateError(QbenchError):
    """Nothing could be aggregated (a one-line reason)."""


@dataclass(frozen=True)
class Thresholds:
    # a config within this fraction of the best median throughput counts as the knee
    knee_fraction: float = 0.95
    # busy errors "begin" at the first worker count whose median busy rate exceeds this (0.001 = 0.1%)
    busy_rate: float = 0.001
    # coefficient of variation above which a config is flagged noisy (pyperf warns at 10%)
    cv: float = 0.10
    # significance level of the rank tests
    alpha: float = 0.05
    # share of worker time spent waiting for a pool connection that names pool exhaustion
    pool_wait_share: float = 0.2
    # share of worker time spent waiting for the write lock that names serialization
    lock_wait_share: float = 0.2
    # retries per task that name crosstalk
    retries_per_task: float = 0.1
    # cores kept busy (the event loop runs on one) that name CPU saturation
    cpu_cores: float = 0.9
    # bootstrap resamples for confidence intervals
    bootstrap_resamples: int = 2000

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


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


def _read_one(path: Path) -> pa.Table:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"not a readable Parquet file ({exc})") from None
    meta = check_metadata(path, parquet.schema_arrow.metadata)
    status = json.loads(meta.get(META_STATUS, "{}") or "{}")
    if status.get("status") not in (None, "ok"):
        raise ResultsError(f"job failed: {status.get('reason') or 'no reason recorded'}")
    try:
        table = parquet.read()
    except (OSError, pa.ArrowException) as exc:
        raise ResultsError(f"unreadable ({exc})") from None
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
            return _read_one(path)
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


def key_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns that tell configs apart, plus the host (hosts are never pooled)."""
    config = [c for c in frame.columns if c not in REQUIRED and c not in NOT_A_KEY]
    return ["host", *config, "workers"]


def config_id(values: Sequence[object]) -> str:
    import hashlib

    return hashlib.sha1(json.dumps([str(v) for v in values]).encode()).hexdigest()[:10]


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["phase"] == "measure"]


def iterations_by_config(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Measured throughputs of each config, keyed by the summary's ``config_id``."""
    keys = key_columns(frame)
    return {
        config_id(values): group["throughput_tps"].to_numpy(dtype=float)
        for values, group in measured(frame).groupby(keys, dropna=False, sort=False)
    }


def summarize(frame: pd.DataFrame, thresholds: Thresholds = Thresholds()) -> pd.DataFrame:
    """One row per distinct config and host, from measured iterations only."""
    data = measured(frame)
    keys = key_columns(frame)
    numeric = data[list(MEDIAN_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    counted = data[[*keys, "run_id", "tasks_lost", "tasks_duplicated", "throughput_tps"]]
    grouped = pd.concat([counted, numeric], axis=1).groupby(keys, dropna=False, sort=True)
    medians = grouped[list(MEDIAN_COLUMNS)].median()
    jobs = grouped["run_id"].nunique()
    lost = grouped["tasks_lost"].sum()
    duplicated = grouped["tasks_duplicated"].sum()
    rows = []
    for position, (values, tps_series) in enumerate(grouped["throughput_tps"]):
        tps = tps_series.to_numpy(dtype=float)
        low, high = bootstrap_median_ci(tps, resamples=thresholds.bootstrap_resamples)
        variation = cv(tps)
        row: dict[str, object] = dict(zip(keys, values, strict=True))
        row.update(
            config_id=config_id(values),
            iterations=len(tps),
            jobs=int(jobs.iloc[position]),
            throughput_tps_median=float(np.median(tps)),
            throughput_tps_mean=float(np.mean(tps)),
            throughput_tps_stdev=float(np.std(tps, ddof=1)) if len(tps) > 1 else float("nan"),
            throughput_tps_ci_low=low,
            throughput_tps_ci_high=high,
            throughput_tps_cv=variation,
            noisy=bool(variation > thresholds.cv) if not np.isnan(variation) else False,
            tasks_lost_total=int(lost.iloc[position]),
            tasks_duplicated_total=int(duplicated.iloc[position]),
        )
        for column in MEDIAN_COLUMNS:
            row[f"{column}_median"] = float(medians[column].iloc[position])
        rows.append(row)
    return pd.DataFrame(rows)


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


def aggregate(
    paths: Sequence[Path], out_dir: Path | None = None, thresholds: Thresholds = Thresholds()
) -> Aggregated:
    """Load, summarise, fit, recommend, compare and report; write everything into ``out_dir``.

    Raises:
        AggregateError: no usable results (the reason names every skipped file).
    """
    from qbench.recommend import comparisons, recommendations
    from qbench.report import write_report
    from qbench.scaling import scaling_table

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
    summary = summarize(frame, thresholds)
    scaling = scaling_table(frame, summary, keys)
    recs = recommendations(frame, summary, scaling, keys, thresholds)
    comps = comparisons(frame, summary, keys, thresholds)

    # Everything goes to a scratch directory first: a failure leaves no partial output.
    with tempfile.TemporaryDirectory(prefix=".qbench-aggregate-", dir=target) as scratch_name:
        scratch = Path(scratch_name)
        _write_parquet(summary, scratch / "summary.parquet")
        _write_parquet(scaling, scratch / "scaling.parquet")
        _write_parquet(recs, scratch / "recommendations.parquet")
        recs.to_csv(scratch / "recommendations.csv", index=False)
        (scratch / "recommendations.md").write_text(_markdown_table(recs), encoding="utf-8")
        _write_parquet(comps, scratch / "comparisons.parquet")
        write_report(
            scratch,
            summary,
            scaling,
            recs,
            comps,
            skipped=loaded.skipped,
            sources=[str(p) for p in paths],
            thresholds=thresholds.as_dict(),
        )
        written = []
        for produced in sorted(scratch.iterdir()):
            final = target / produced.name
            shutil.move(str(produced), final)  # same directory tree: an atomic rename
            written.append(final)
    return Aggregated(target, written, loaded, summary, recs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qbench.aggregate",
        description="Aggregate qbench sweeps into a summary, scaling fits, recommendations and a report.",
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs, job dirs, or folders of sweeps")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the first DIR)")
    defaults = Thresholds()
    for f in fields(Thresholds):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(getattr(defaults, f.name)),
            default=getattr(defaults, f.name),
            help=f"default {getattr(defaults, f.name)}",
        )
    return parser


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    values = {f.name: getattr(args, f.name) for f in fields(Thresholds)}
    for name in ("knee_fraction", "busy_rate", "cv", "alpha", "pool_wait_share", "lock_wait_share"):
        if not 0 < values[name] <= 1:
            raise AggregateError(
                f"--{name.replace('_', '-')}={values[name]} is not allowed: expected a number in (0, 1]"
            )
    if values["bootstrap_resamples"] < 100:
        raise AggregateError(
            f"--bootstrap-resamples={values['bootstrap_resamples']} is not allowed: expected >= 100"
        )
    return Thresholds(**values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = aggregate(args.dirs, args.out, thresholds_from(args))
    except AggregateError as exc:
        print(f"qbench.aggregate: error: {exc}", file=sys.stderr)
        return 2
    for path, reason in result.loaded.skipped:
        print(f"qbench.aggregate: skipped {path}: {reason}", file=sys.stderr)
    print(
        f"aggregated {len(result.loaded.files)} file(s), {len(result.summary)} config(s) "
        f"-> {result.out_dir} ({', '.join(p.name for p in result.written)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
