"""Comparisons: pairs of configs that differ in exactly one dimension, from the iterations.

Each pair gets a two-sided Mann-Whitney U test on the measured iterations'
throughput and the ratio of medians with its bootstrap CI.
"""

from __future__ import annotations

import itertools

import pandas as pd

from qbench.analysis.stats import compare_samples
from qbench.analysis.summary import iterations_by_config
from qbench.analysis.thresholds import Thresholds

# Keys compared one at a time; a tuple moves together (a journal brings its synchronous level).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "journal": ("journal_mode", "synchronous"),
    "claim_tx": ("claim_tx",),
    "busy_policy": ("busy_policy",),
    "pool": ("pool_kind", "pool_size", "pool_ratio"),
}


def comparisons(frame: pd.DataFrame, summary: pd.DataFrame, keys: list[str], t: Thresholds) -> pd.DataFrame:
    """Pairs of configs that differ in exactly one dimension: rank test and effect with CI.

    With up to three values of the dimension every pair is compared; with more, each
    value is compared against the best of them.
    """
    samples = iterations_by_config(frame)
    rows = []
    for dimension, columns in DIMENSIONS.items():
        present = [c for c in columns if c in summary.columns]
        if not present:
            continue
        others = [k for k in keys if k not in present]
        for context_values, group in summary.groupby(others, dropna=False, sort=True):
            variants = group.drop_duplicates(present)
            if len(variants) < 2:
                continue
            context = dict(zip(others, context_values, strict=True))
            records = [row for _, row in variants.iterrows()]
            if len(records) <= 3:
                pairs = list(itertools.combinations(records, 2))
            else:
                # Many values of one knob: each against the best of them, not every pair.
                best = max(records, key=lambda r: r["throughput_tps_median"])
                pairs = [(r, best) for r in records if r["config_id"] != best["config_id"]]
            for a, b in pairs:
                test = compare_samples(
                    samples[a["config_id"]],
                    samples[b["config_id"]],
                    alpha=t.alpha,
                    resamples=t.bootstrap_resamples,
                )
                rows.append(
                    {
                        "host": context.get("host"),
                        "key": dimension,
                        "value_a": "/".join(str(a[c]) for c in present),
                        "value_b": "/".join(str(b[c]) for c in present),
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
