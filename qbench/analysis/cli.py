"""The analysis command lines: ``python -m qbench.aggregate`` and ``python -m qbench.compare``.

Each maps a :class:`~qbench.errors.QbenchError` to one line and exit 2 at
this boundary; nothing is written then. ``qbench.compare`` exits 0 (pass),
1 (the gate failed), 2 (unusable input) or 3 (inconclusive): see
:data:`COMPARE_EPILOG`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import pandas as pd

from qbench.analysis.compare import EXIT_UNUSABLE, Comparison, compare_sweeps
from qbench.analysis.pipeline import Aggregated, aggregate
from qbench.analysis.thresholds import Thresholds
from qbench.errors import ConfigError, QbenchError
from qbench.results.files import one_line

COMPARE_DOC = """Compare two sweeps config by config, so a slowdown can gate CI.

Each config of the baseline is matched in the candidate; the measured iterations' throughput
is compared with a two-sided Mann-Whitney U test and the ratio of medians (candidate/baseline)."""

COMPARE_EPILOG = """exit status:
  0  pass: every baseline config was compared, none is significantly slower by more than
     the threshold
  1  the gate failed: a config is significantly slower by more than the threshold; or the
     candidate lacks results the baseline has (a missing config, a failed or unfinished
     job, a file left out for a bad value); or a throughput is not a finite number above 0
     (0, NaN, inf, null, negative). Each reason is printed.
  2  unusable input: a path that does not exist, a results file that cannot be read
     (corrupt, truncated, foreign, wrong column types, not a regular file), a side with no
     usable results, mixed hosts, no config in common, or a bad option
  3  inconclusive: nothing failed, but some config has too few iterations for the rank
     test to reach p < alpha: with n1 and n2 iterations the smallest two-sided p is
     2/C(n1+n2, n1) (2 a side: 0.33; 3: 0.1; 4: 0.029), so no slowdown could have been
     detected. Run more iterations (4 a side for alpha 0.05)."""


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


def _summary_line(result: Aggregated) -> str:
    loaded = result.loaded
    line = (
        f"aggregated {len(loaded.files)} file(s), {len(result.summary)} config(s) "
        f"-> {result.out_dir} ({', '.join(p.name for p in result.written)})"
    )
    if loaded.jobs:
        named = "; ".join(f"{path} ({reason})" for path, reason in loaded.jobs)
        line += f"; {len(loaded.jobs)} job(s) failed or did not finish: {named}"
    others = len(loaded.skipped) - len(loaded.jobs)
    if others:
        line += f"; {others} other file(s) left out"
    return line


def aggregate_main(argv: Sequence[str] | None = None) -> int:
    args = aggregate_parser().parse_args(argv)
    try:
        thresholds = Thresholds.from_mapping(
            {f.name: getattr(args, f.name) for f in fields(Thresholds)}, "--"
        )
        result = aggregate(args.dirs, args.out, thresholds)
    except QbenchError as exc:
        print(f"qbench.aggregate: error: {one_line(exc, 4000)}", file=sys.stderr)
        return 2
    for path, reason in result.loaded.skipped:
        print(f"qbench.aggregate: skipped {path}: {reason}", file=sys.stderr)
    print(_summary_line(result))
    return 0


def _print_comparison(table: pd.DataFrame) -> None:
    if table.empty:
        return
    varying = [
        c
        for c in table.columns[: list(table.columns).index("baseline_tps")]
        if table[c].astype(str).nunique() > 1
    ]
    for _, row in table.iterrows():
        label = ", ".join(f"{c}={row[c]}" for c in varying) or "config"
        verdict = str(row["verdict"])
        if row["invalid"]:
            verdict += f" ({row['invalid']})"
        elif row["inconclusive"]:
            verdict += (
                f" ({row['baseline_iterations']} and {row['candidate_iterations']} iterations: "
                f"the smallest possible p is {row['min_p_value']:.3g})"
            )
        print(
            f"{label}: {row['baseline_tps']:,.0f} -> {row['candidate_tps']:,.0f} tasks/s, "
            f"ratio {row['ratio']:.3f} [{row['ratio_ci_low']:.3f}, {row['ratio_ci_high']:.3f}], "
            f"p={row['p_value']:.3g}: {verdict}"
        )


def _iteration_note(table: pd.DataFrame) -> str | None:
    """A note when the two sides measured different numbers of iterations per config."""
    if table.empty:
        return None
    base = sorted(set(table["baseline_iterations"].astype(int)))
    cand = sorted(set(table["candidate_iterations"].astype(int)))
    if base == cand:
        return None

    def counts(values: list[int]) -> str:
        return "/".join(str(v) for v in values) + (" iteration" if values == [1] else " iterations")

    return (
        f"note: the baseline has {counts(base)} per config, the candidate {counts(cand)}: "
        "the rank test allows for it, but noise differs between the sides"
    )


def _report_gate(result: Comparison, threshold: float, alpha: float) -> None:
    if (note := _iteration_note(result.table)) is not None:
        print(note)
    counts = {name: result.count(name) for name in ("regression", "invalid", "inconclusive")}
    line = f"{len(result.table)} config(s) compared, {counts['regression']} significantly slower "
    line += f"by more than {threshold:.0%}"
    if counts["invalid"]:
        line += f", {counts['invalid']} with an invalid throughput"
    if counts["inconclusive"]:
        line += f", {counts['inconclusive']} inconclusive (too few iterations for p < {alpha:g})"
    print(line)
    # A gate must not pass because the candidate's results went missing or failed.
    if result.missing or result.incomplete:
        print(
            f"incomplete: {len(result.missing)} baseline config(s) missing from the candidate, "
            f"{len(result.incomplete)} file(s) or job(s) left out"
        )


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qbench.compare",
        description=COMPARE_DOC,
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--threshold", type=float, default=0.05, help="slowdown that fails (0.05 = 5%%)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the rank test")
    return parser


def compare_main(argv: Sequence[str] | None = None) -> int:
    args = compare_parser().parse_args(argv)
    try:
        if not 0 <= args.threshold < 1:
            raise ConfigError("--threshold", args.threshold, "expected a number in [0, 1)")
        if not 0 < args.alpha < 1:
            raise ConfigError("--alpha", args.alpha, "expected a number in (0, 1)")
        result = compare_sweeps(args.baseline, args.candidate, threshold=args.threshold, alpha=args.alpha)
    except QbenchError as exc:
        print(f"qbench.compare: error: {one_line(exc, 4000)}", file=sys.stderr)
        return EXIT_UNUSABLE
    for path, reason in result.skipped:
        print(f"qbench.compare: skipped {path}: {reason}", file=sys.stderr)
    for label in result.missing:
        print(f"qbench.compare: the candidate has no results for {label}", file=sys.stderr)
    if result.unreadable:
        print(
            f"qbench.compare: error: {len(result.unreadable)} results file(s) cannot be read "
            "(listed above): the comparison is not usable",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    _print_comparison(result.table)
    _report_gate(result, args.threshold, args.alpha)
    return result.exit_status()
