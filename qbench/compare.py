"""Compare two sweeps config by config, so a slowdown can gate CI.

    python -m qbench.compare BASELINE CANDIDATE [--threshold 0.05] [--alpha 0.05]

Configs are matched on every config value (hosts may differ: the point may
be a new machine). For each match: a two-sided Mann-Whitney U test on the
measured iterations' throughput and the ratio of medians (candidate /
baseline) with its bootstrap CI. Exit status 1 when any config is
significantly slower by more than the threshold, 2 when the input is
unusable, 0 otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qbench.aggregate import AggregateError, key_columns, load_results, measured
from qbench.analysis import compare_samples


def _norm(value: object) -> object:
    """A config value as a matching key: NaN/None alike, 4.0 and 4 alike."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class Comparison:
    table: pd.DataFrame
    skipped: list[tuple[str, str]]
    # baseline configs that the candidate does not have (a failed or missing job)
    missing: list[str]


def compare_sweeps(baseline: Path, candidate: Path, *, threshold: float, alpha: float) -> Comparison:
    """One row per config present in both sweeps.

    Raises:
        AggregateError: a side has no usable results, mixes hosts, or nothing matches.
    """
    paths = {"baseline": baseline, "candidate": candidate}
    loaded = {name: load_results([path]) for name, path in paths.items()}
    frames = {}
    for name, result in loaded.items():
        frame = measured(result.frame).copy() if not result.frame.empty else result.frame
        if frame.empty:
            raise AggregateError(f"the {name} ({paths[name]}) holds no usable results")
        hosts = sorted(frame["host"].astype(str).unique())
        if len(hosts) > 1:
            raise AggregateError(
                f"the {name} mixes results of {len(hosts)} hosts ({', '.join(hosts)}): "
                "compare one host's sweeps"
            )
        frames[name] = frame
    base, cand = frames["baseline"], frames["candidate"]
    keys = sorted({*key_columns(base), *key_columns(cand)} - {"host"})
    for frame in (base, cand):
        for key in keys:
            if key not in frame.columns:
                frame[key] = None  # a key only one side has is a missing value there, not ignored

    def groups(frame: pd.DataFrame) -> dict[tuple[object, ...], pd.Series]:
        return {
            tuple(_norm(v) for v in values): group["throughput_tps"]
            for values, group in frame.groupby(keys, dropna=False, sort=True)
        }

    cand_groups = groups(cand)
    rows: list[dict[str, object]] = []
    missing: list[str] = []
    for values, series in groups(base).items():
        other = cand_groups.get(values)
        if other is None:
            missing.append(", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)))
            continue
        test = compare_samples(series.to_numpy(dtype=float), other.to_numpy(dtype=float), alpha=alpha)
        rows.append(
            {
                **dict(zip(keys, values, strict=True)),
                "baseline_tps": test.median_a,
                "candidate_tps": test.median_b,
                "ratio": test.ratio,
                "ratio_ci_low": test.ratio_ci_low,
                "ratio_ci_high": test.ratio_ci_high,
                "p_value": test.p_value,
                "significant": test.significant,
                "regression": bool(test.significant and test.ratio < 1.0 - threshold),
            }
        )
    if not rows:
        raise AggregateError("the two sweeps share no config: nothing to compare")
    skipped = loaded["baseline"].skipped + loaded["candidate"].skipped
    return Comparison(pd.DataFrame(rows), skipped, missing)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--threshold", type=float, default=0.05, help="slowdown that fails (0.05 = 5%%)")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the rank test")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.threshold < 1:
            raise AggregateError(f"--threshold={args.threshold} is not allowed: expected a number in [0, 1)")
        if not 0 < args.alpha < 1:
            raise AggregateError(f"--alpha={args.alpha} is not allowed: expected a number in (0, 1)")
        result = compare_sweeps(args.baseline, args.candidate, threshold=args.threshold, alpha=args.alpha)
    except AggregateError as exc:
        print(f"qbench.compare: error: {exc}", file=sys.stderr)
        return 2
    table = result.table
    for path, reason in result.skipped:
        print(f"qbench.compare: skipped {path}: {reason}", file=sys.stderr)
    for label in result.missing:
        print(f"qbench.compare: the candidate has no results for {label}", file=sys.stderr)
    varying = [
        c
        for c in table.columns[: list(table.columns).index("baseline_tps")]
        if table[c].astype(str).nunique() > 1
    ]
    for _, row in table.iterrows():
        label = ", ".join(f"{c}={row[c]}" for c in varying) or "config"
        verdict = (
            "REGRESSION"
            if row["regression"]
            else ("faster" if row["significant"] and row["ratio"] > 1 else "same")
        )
        print(
            f"{label}: {row['baseline_tps']:,.0f} -> {row['candidate_tps']:,.0f} tasks/s, "
            f"ratio {row['ratio']:.3f} [{row['ratio_ci_low']:.3f}, {row['ratio_ci_high']:.3f}], "
            f"p={row['p_value']:.3g}: {verdict}"
        )
    regressions = int(table["regression"].sum())
    print(
        f"{len(table)} config(s) compared, "
        f"{regressions} significantly slower by more than {args.threshold:.0%}"
    )
    # A gate must not pass because the candidate's results went missing or failed.
    incomplete = bool(result.missing or result.skipped)
    if incomplete:
        print(
            f"incomplete: {len(result.missing)} baseline config(s) missing from the candidate, "
            f"{len(result.skipped)} file(s) skipped"
        )
    return 1 if regressions or incomplete else 0


if __name__ == "__main__":
    raise SystemExit(main())
