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
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from qbench.aggregate import AggregateError, key_columns, load_results, measured
from qbench.analysis import compare_samples


def compare_sweeps(
    baseline: Path, candidate: Path, *, threshold: float, alpha: float
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """One row per config present in both; the second value lists skipped files."""
    loaded = {name: load_results([path]) for name, path in (("baseline", baseline), ("candidate", candidate))}
    skipped = loaded["baseline"].skipped + loaded["candidate"].skipped
    for name, result in loaded.items():
        if result.frame.empty:
            raise AggregateError(
                f"the {name} {baseline if name == 'baseline' else candidate} holds no usable results"
            )
    base, cand = measured(loaded["baseline"].frame), measured(loaded["candidate"].frame)
    keys = [k for k in key_columns(base) if k != "host" and k in cand.columns]
    rows = []
    cand_groups = {tuple(str(v) for v in values): group for values, group in cand.groupby(keys, dropna=False)}
    for values, group in base.groupby(keys, dropna=False, sort=True):
        other = cand_groups.get(tuple(str(v) for v in values))
        if other is None:
            continue
        test = compare_samples(group["throughput_tps"], other["throughput_tps"], alpha=alpha)
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
    return pd.DataFrame(rows), skipped


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
        table, skipped = compare_sweeps(
            args.baseline, args.candidate, threshold=args.threshold, alpha=args.alpha
        )
    except AggregateError as exc:
        print(f"qbench.compare: error: {exc}", file=sys.stderr)
        return 2
    for path, reason in skipped:
        print(f"qbench.compare: skipped {path}: {reason}", file=sys.stderr)
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
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
