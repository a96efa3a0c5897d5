"""Comparisons: pairs of configs that differ in exactly one dimension, from the iterations.

Each pair gets a two-sided Mann-Whitney U test on the measured iterations'
throughput and the ratio of medians with its bootstrap CI.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from qbench.analysis.stats import Comparison, Samples, compare_many
from qbench.analysis.summary import iterations_by_config
from qbench.analysis.thresholds import Thresholds

Row = Mapping[str, Any]

# Pairs compared in one call of compare_many: their resampled ratios (pairs x resamples, 8 MB at
# 2,000 resamples) are all that call holds, not those of thousands of pairs at once.
COMPARE_SLICE = 500

# Keys compared one at a time; a tuple moves together (a journal brings its synchronous level).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "journal": ("journal_mode", "synchronous"),
    "claim_tx": ("claim_tx",),
    "busy_policy": ("busy_policy",),
    "pool": ("pool_kind", "pool_size", "pool_ratio"),
    # a queue brings its declared delivery (and, for queue=custom, its target)
    "queue": ("queue_kind", "queue_target", "queue_delivery"),
}


def _shown(row: Row, columns: list[str]) -> str:
    """A side's values of the dimension, joined by '/'; unset ones (a queue's null target) left out."""
    return "/".join(str(row[c]) for c in columns if not pd.isna(row[c]))


def _pairs(
    summary: pd.DataFrame, keys: list[str]
) -> list[tuple[str, list[str], dict[str, object], Row, Row]]:
    """(dimension, its columns, the context, side a, side b) of every pair to compare."""
    records = summary.to_dict("records")
    found: list[tuple[str, list[str], dict[str, object], Row, Row]] = []
    for dimension, columns in DIMENSIONS.items():
        present = [c for c in columns if c in summary.columns]
        if not present:
            continue
        others = [k for k in keys if k not in present]
        # The groups by number (pandas' sorted order), each with its rows in summary order.
        grouped = summary.groupby(others, dropna=False, sort=True)
        members: dict[int, list[int]] = {}
        for position, code in enumerate(grouped.ngroup().tolist()):
            members.setdefault(code, []).append(position)
        for code, context_values in enumerate(grouped.size().index):
            # one row per value of the dimension, the first one (as drop_duplicates keeps)
            variants: dict[tuple[object, ...], Row] = {}
            for position in members.get(code, []):
                row = records[position]
                variants.setdefault(tuple(None if pd.isna(row[c]) else row[c] for c in present), row)
            if len(variants) < 2:
                continue
            context = dict(zip(others, context_values, strict=True))
            shown = list(variants.values())
            if len(shown) <= 3:
                pairs = list(itertools.combinations(shown, 2))
            else:
                # Many values of one knob: each against the best of them, not every pair.
                best = max(shown, key=lambda r: r["throughput_tps_median"])
                pairs = [(r, best) for r in shown if r["config_id"] != best["config_id"]]
            found.extend((dimension, present, context, a, b) for a, b in pairs)
    return found


def _compare(pairs: Sequence[tuple[Samples, Samples]], t: Thresholds) -> list[Comparison]:
    """:func:`compare_many` of every pair, a slice of pairs at a time: the same tests as one call
    (each pair's are its own, and each size's resamples are drawn from the same seed in every call)."""
    tests: list[Comparison] = []
    for start in range(0, len(pairs), COMPARE_SLICE):
        part = pairs[start : start + COMPARE_SLICE]
        tests.extend(compare_many(part, alpha=t.alpha, resamples=t.bootstrap_resamples))
    return tests


def comparisons(frame: pd.DataFrame, summary: pd.DataFrame, keys: list[str], t: Thresholds) -> pd.DataFrame:
    """Pairs of configs that differ in exactly one dimension: rank test and effect with CI.

    With up to three values of the dimension every pair is compared; with more, each
    value is compared against the best of them.
    """
    samples = iterations_by_config(frame)
    found = _pairs(summary, keys)
    # Every pair's test at once: pairs of one size share their resamples (the same numbers).
    tests = _compare([(samples[a["config_id"]], samples[b["config_id"]]) for _, _, _, a, b in found], t)
    rows = []
    for (dimension, present, context, a, b), test in zip(found, tests, strict=True):
        rows.append(
            {
                "host": context.get("host"),
                "key": dimension,
                "value_a": _shown(a, present),
                "value_b": _shown(b, present),
                "context": f"workers={context.get('workers')}",
                "throughput_a_tps": test.median_a,
                "throughput_b_tps": test.median_b,
                "ratio": test.ratio,
                "ratio_ci_low": test.ratio_ci_low,
                "ratio_ci_high": test.ratio_ci_high,
                "p_value": test.p_value,
                "significant": test.significant,
                "config_id_a": a["config_id"],
                "config_id_b": b["config_id"],
            }
        )
    return pd.DataFrame(rows)
