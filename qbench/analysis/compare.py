"""Compare two sweeps config by config, so a slowdown can gate CI.

    python -m qbench.compare BASELINE CANDIDATE [--threshold 0.05] [--alpha 0.05]

Configs are matched on every config value (hosts may differ: the point may
be a new machine). For each match: a two-sided Mann-Whitney U test on the
measured iterations' throughput and the ratio of medians (candidate /
baseline) with its bootstrap CI. The gate (:meth:`Comparison.exit_status`):

- 0: every baseline config was compared and none is significantly slower by
  more than the threshold;
- 1: the gate failed: a config is significantly slower by more than the
  threshold, the candidate lacks results the baseline has (a missing config,
  a failed or unfinished job, a file left out for a bad value), or a
  throughput is not a finite number above 0 (0, NaN, inf, null, negative);
- 2: the input is unusable: a results file that cannot be read, a side with
  no usable results, mixed hosts, no config in common;
- 3: inconclusive: nothing failed, but some config has too few iterations for
  the rank test to reach p < alpha (the smallest two-sided p with n1 and n2
  iterations is 2 / C(n1+n2, n1)), so a slowdown could not have been detected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbench.analysis.stats import compare_samples, min_p_value
from qbench.analysis.summary import key_columns, measured
from qbench.errors import AggregateError
from qbench.results.load import Loaded, load_results

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INCONCLUSIVE = 0, 1, 2, 3


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
    # files of either side that cannot be read as qbench results: the comparison is unusable
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    # copies of a job already counted: left out, and no reason to fail the gate
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    @property
    def incomplete(self) -> list[tuple[str, str]]:
        """Files and jobs left out that mean results are missing (failed jobs, bad values)."""
        harmless = {*self.duplicates, *self.unreadable}
        return [entry for entry in self.skipped if entry not in harmless]

    def count(self, column: str) -> int:
        return 0 if self.table.empty else int(self.table[column].astype(bool).sum())

    def exit_status(self) -> int:
        """0 pass, 1 gate failed, 2 unusable input, 3 inconclusive (see the module doc)."""
        if self.unreadable:
            return EXIT_UNUSABLE
        if self.count("regression") or self.count("invalid") or self.missing or self.incomplete:
            return EXIT_FAILED
        return EXIT_INCONCLUSIVE if self.count("inconclusive") else EXIT_OK


def _side(name: str, path: Path) -> tuple[Loaded, pd.DataFrame]:
    """One side's results and its measured rows.

    Raises:
        AggregateError: no usable results (the baseline; or a candidate with no results at all
            or unreadable ones), or results of several hosts.
    """
    loaded = load_results([path])
    frame = measured(loaded.frame).copy() if not loaded.frame.empty else loaded.frame
    if frame.empty:
        # A candidate whose every job failed or held bad values fails the gate (exit 1), named.
        if name == "candidate" and loaded.skipped and not loaded.unreadable:
            return loaded, frame
        reasons = "; ".join(f"{p}: {r}" for p, r in loaded.skipped)
        raise AggregateError(
            f"the {name} ({path}) holds no usable results" + (f" ({reasons})" if reasons else "")
        )
    hosts = sorted(frame["host"].astype(str).unique())
    if len(hosts) > 1:
        raise AggregateError(
            f"the {name} mixes results of {len(hosts)} hosts ({', '.join(hosts)}): compare one host's sweeps"
        )
    return loaded, frame


def _invalid(side: str, values: np.ndarray) -> str:
    """Why a side's throughputs cannot be gated on ('' when every one is a finite number above 0)."""
    bad = ~np.isfinite(values) | (values <= 0)
    if not bad.any():
        return ""
    shown = ", ".join(sorted({"null" if np.isnan(v) else f"{v:g}" for v in values[bad]}))
    return f"{side} throughput {shown} tasks/s in {int(bad.sum())} of {values.size} iteration(s)"


def _row(base: np.ndarray, cand: np.ndarray, threshold: float, alpha: float) -> dict[str, object]:
    test = compare_samples(base, cand, alpha=alpha)
    invalid = _invalid("candidate", cand) or _invalid("baseline", base)
    floor = min_p_value(base.size, cand.size)
    inconclusive = not invalid and floor >= alpha
    regression = bool(test.significant and test.ratio < 1.0 - threshold and not (invalid or inconclusive))
    if invalid or regression or inconclusive:
        verdict = "INVALID" if invalid else "REGRESSION" if regression else "INCONCLUSIVE"
    else:
        verdict = "faster" if test.significant and test.ratio > 1 else "same"
    return {
        "baseline_tps": test.median_a,
        "candidate_tps": test.median_b,
        "ratio": test.ratio,
        "ratio_ci_low": test.ratio_ci_low,
        "ratio_ci_high": test.ratio_ci_high,
        "p_value": test.p_value,
        "significant": test.significant,
        "regression": regression,
        "baseline_iterations": base.size,
        "candidate_iterations": cand.size,
        "min_p_value": floor,
        "inconclusive": inconclusive,
        "invalid": invalid,
        "verdict": verdict,
    }


def compare_sweeps(baseline: Path, candidate: Path, *, threshold: float, alpha: float) -> Comparison:
    """One row per config present in both sweeps.

    Raises:
        AggregateError: a side has no usable results, mixes hosts, or nothing matches.
    """
    (base_loaded, base), (cand_loaded, cand) = _side("baseline", baseline), _side("candidate", candidate)
    keys = sorted({*key_columns(base), *(key_columns(cand) if not cand.empty else [])} - {"host"})
    for frame in (base, cand):
        for key in keys:
            if key not in frame.columns:
                frame[key] = None  # a key only one side has is a missing value there, not ignored

    def groups(frame: pd.DataFrame) -> dict[tuple[object, ...], pd.Series]:
        if frame.empty:
            return {}
        return {
            tuple(_norm(v) for v in values): group["throughput_tps"]
            for values, group in frame.groupby(keys, dropna=False, sort=True)
        }

    cand_groups, base_groups = groups(cand), groups(base)
    # a config is named by the keys that tell the baseline's configs apart, not all of them
    named = [i for i, _ in enumerate(keys) if len({str(v[i]) for v in base_groups}) > 1]
    named = named or [keys.index("workers")]
    rows: list[dict[str, object]] = []
    missing: list[str] = []
    for values, series in base_groups.items():
        other = cand_groups.get(values)
        if other is None:
            missing.append(", ".join(f"{keys[i]}={values[i]}" for i in named))
            continue
        row = _row(series.to_numpy(dtype=float), other.to_numpy(dtype=float), threshold, alpha)
        rows.append({**dict(zip(keys, values, strict=True)), **row})
    if not rows and not cand.empty:
        raise AggregateError("the two sweeps share no config: nothing to compare")
    sides = (base_loaded, cand_loaded)
    return Comparison(
        pd.DataFrame(rows),
        [entry for side in sides for entry in side.skipped],
        missing,
        [entry for side in sides for entry in side.unreadable],
        [entry for side in sides for entry in side.duplicates],
    )
