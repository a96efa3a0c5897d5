"""The report's words: plurals, p-values, and configs named by the keys that tell them apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qbench.report.plots import _fmt, _num

# Columns of a recommendations row that say what it is for, before its figures.
LEAD = ("host", "workload_kind", "journal_mode", "synchronous")
FIRST_FIGURE = "recommended_workers"
# Recommendation tables written before the stable knee start their figures here.
OLD_FIRST_FIGURE = "best_workers"


def plural(n: Any, word: str, many: str | None = None) -> str:
    """``1 worker``, ``5 workers``, ``1,000 configurations`` (numbers as ``_fmt`` writes integers)."""
    x = _num(n)
    one = x is not None and round(x) == 1
    return f"{_fmt(n, 'int')} {word if one else (many or word + 's')}"


def p_phrase(p: Any) -> str:
    """``p<0.001`` or ``p=0.0079``: never ``p=<0.001``. Plain text: the markup escapes it once."""
    x = _num(p)
    if x is None:
        return "p not computed"
    return "p<0.001" if x < 0.001 else f"p={_fmt(x, 'p')}"


def _norm(value: Any) -> str:
    if isinstance(value, str):
        return value
    x = _num(value)
    if x is None:
        return "" if value is None or not isinstance(value, int | float) else str(value)
    return str(int(x)) if x.is_integer() else repr(x)


def distinguishing(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """The columns whose value differs between ``rows``: what tells them apart."""
    return [c for c in columns if len({_norm(r.get(c)) for r in rows}) > 1]


def name_by(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """``journal_mode=wal, workers=5``: a config by the given keys only."""
    return ", ".join(f"{c}={_norm(row.get(c))}" for c in columns)


def setting_columns(recs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Group keys of recommendation rows beyond the lead ones that differ between rows.

    Two rows that share host, workload and storage but differ in, say, ``tasks``
    (two stages of a plan) would otherwise look identical in the report.
    """
    if not recs:
        return []
    names = list(recs[0])
    end = next((names.index(c) for c in (FIRST_FIGURE, OLD_FIRST_FIGURE) if c in names), len(names))
    extra = [c for c in names[:end] if c not in LEAD]
    return distinguishing(recs, extra)


def method_paragraphs() -> list[str]:
    """How every figure and every rule of the report was derived, in the report's own words."""
    return [
        "Every figure is the median over the measured iterations of a configuration; warmup iterations are "
        "excluded. Intervals are 95% bootstrap confidence intervals of the median (none below 3 iterations). "
        "A configuration is flagged noisy when the coefficient of variation of its throughput exceeds the cv "
        "threshold. Comparisons use the Mann-Whitney U rank test on the iterations; the effect is the ratio "
        "of medians.",
        "The recommended worker count is the fewest workers on the best configuration's curve whose "
        "throughput is not significantly below the best median: significantly below means the rank test "
        "rejects at alpha with a lower median, or the distribution-free 95% interval of its median (order "
        "statistics of the iterations) lies wholly below the best's. Its stability is the share of 200 "
        "seeded bootstrap resamples of every configuration's iterations in which the same rule, the best "
        "included, picks the same count; below 80% the confidence note says so. The best median and the "
        "knee (the fewest workers within knee_fraction of the best median) are shown beside it.",
        "Scaling fits are nonlinear least squares of the Universal Scalability Law and of Amdahl's law "
        "(\N{GREEK SMALL LETTER KAPPA}=0). Only a fit whose status is ok (R² at least 0.8) has its "
        "coefficients, N* and peak printed and its curve drawn; a coefficient stopped by its upper bound 1 "
        "is marked 'at bound 1'.",
        "Bottlenecks are named in this order, the first that the figures show: pool waits; the worker "
        "process (its CPU near one core per process while throughput is below half the single-connection "
        "ceiling); task service time (throughput near workers \N{MULTIPLICATION SIGN} 1000 / service_ms); "
        "measured retries and write-lock waits; then crosstalk or serialization from an ok USL fit only; "
        "then CPU, fsyncs and round trips against the ceiling. The ceiling runs once per job, so a median "
        "above 100% of it means at the ceiling, within its noise.",
    ]
