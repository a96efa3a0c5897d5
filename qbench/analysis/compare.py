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

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qbench.analysis.stats import compare_samples
from qbench.analysis.summary import key_columns, measured
from qbench.errors import AggregateError
from qbench.results.load import load_results


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
