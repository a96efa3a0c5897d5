"""The analysis command lines: ``python -m qbench.aggregate`` and ``python -m qbench.compare``.

Each maps a :class:`~qbench.errors.QbenchError` to one line and exit 2 at
this boundary; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import pandas as pd

from qbench.analysis.compare import compare_sweeps
from qbench.analysis.pipeline import aggregate
from qbench.analysis.thresholds import Thresholds
from qbench.errors import ConfigError, QbenchError

COMPARE_DOC = """Compare two sweeps config by config, so a slowdown can gate CI.

Exit status 1 when any config is significantly slower by more than the threshold (or the
candidate lacks results the baseline has), 2 when the input is unusable, 0 otherwise."""


def aggregate_parser() -> argparse.ArgumentParser:
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


def aggregate_main(argv: Sequence[str] | None = None) -> int:
    args = aggregate_parser().parse_args(argv)
    try:
        thresholds = Thresholds.from_mapping(
            {f.name: getattr(args, f.name) for f in fields(Thresholds)}, "--"
        )
        result = aggregate(args.dirs, args.out, thresholds)
    except QbenchError as exc:
        print(f"qbench.aggregate: error: {exc}", file=sys.stderr)
        return 2
    for path, reason in result.loaded.skipped:
        print(f"qbench.aggregate: skipped {path}: {reason}", file=sys.stderr)
    print(
        f"aggregated {len(result.loaded.files)} file(s), {len(result.summary)} config(s) "
        f"-> {result.out_dir} ({', '.join(p.name for p in result.written)})"
    )
    return 0


def _verdict(row: pd.Series) -> str:
    if row["regression"]:
        return "REGRESSION"
    return "faster" if row["significant"] and row["ratio"] > 1 else "same"


def _print_comparison(table: pd.DataFrame) -> None:
    varying = [
        c
        for c in table.columns[: list(table.columns).index("baseline_tps")]
        if table[c].astype(str).nunique() > 1
    ]
    for _, row in table.iterrows():
        label = ", ".join(f"{c}={row[c]}" for c in varying) or "config"
        print(
            f"{label}: {row['baseline_tps']:,.0f} -> {row['candidate_tps']:,.0f} tasks/s, "
            f"ratio {row['ratio']:.3f} [{row['ratio_ci_low']:.3f}, {row['ratio_ci_high']:.3f}], "
            f"p={row['p_value']:.3g}: {_verdict(row)}"
        )


def compare_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.compare", description=COMPARE_DOC)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--threshold", type=float, default=0.05, help="slowdown that fails (0.05 = 5%%)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the rank test")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.threshold < 1:
            raise ConfigError("--threshold", args.threshold, "expected a number in [0, 1)")
        if not 0 < args.alpha < 1:
            raise ConfigError("--alpha", args.alpha, "expected a number in (0, 1)")
        result = compare_sweeps(args.baseline, args.candidate, threshold=args.threshold, alpha=args.alpha)
    except QbenchError as exc:
        print(f"qbench.compare: error: {exc}", file=sys.stderr)
        return 2
    table = result.table
    for path, reason in result.skipped:
        print(f"qbench.compare: skipped {path}: {reason}", file=sys.stderr)
    for label in result.missing:
        print(f"qbench.compare: the candidate has no results for {label}", file=sys.stderr)
    _print_comparison(table)
    regressions = int(table["regression"].sum())
    slower = f"{regressions} significantly slower by more than {args.threshold:.0%}"
    print(f"{len(table)} config(s) compared, {slower}")
    # A gate must not pass because the candidate's results went missing or failed.
    incomplete = bool(result.missing or result.skipped)
    if incomplete:
        print(
            f"incomplete: {len(result.missing)} baseline config(s) missing from the candidate, "
            f"{len(result.skipped)} file(s) skipped"
        )
    return 1 if regressions or incomplete else 0
