"""The stable knee: the fewest workers not significantly slower than the best, and how stable that is.

Picking the best median of a flat, noisy curve picks noise: two runs of one
command disagree. The recommended worker count is instead the fewest workers
on the best config's curve whose throughput is not significantly below the
best's. "Significantly below" is either of two tests a reader can check in
the report:

- the two-sided Mann-Whitney U test on the iterations rejects at ``alpha``
  and the median is lower; or
- the distribution-free 95% CI of its median (order statistics of the
  iterations) lies wholly below the best's, which still separates configs when
  too few iterations leave the rank test powerless (3 a side: p >= 0.1).

The recommendation's stability is the share of bootstrap resamples of the
iterations (every config resampled, ``STABILITY_RESAMPLES`` times, seeded)
in which the same rule, best included, picks the same worker count. The
original data are replicate 0, so the recommendation and its stability
come from one function and cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from qbench.analysis.stats import median_ci_rank, rank_test_rows

FloatArray = NDArray[np.float64]

# Resamples for the stability figure: its standard error is at most 0.5/sqrt(200) = 3.5
# percentage points, enough to tell a stable pick (>= 80%) from a coin toss, and cheap.
STABILITY_RESAMPLES = 200
STABILITY_SEED = 0


@dataclass(frozen=True)
class Point:
    """One config of a group: which curve it lies on, its worker count and its iterations."""

    curve: int
    workers: int
    samples: FloatArray


@dataclass(frozen=True)
class Pick:
    # index (into the points) of the best median and of the recommended config, on the data
    best: int
    recommended: int
    # share of bootstrap resamples whose rule picked the same worker count; NaN without resamples
    stability: float
    resamples: int


def _replicates(points: Sequence[Point], resamples: int, seed: int) -> list[FloatArray]:
    """Per point a (1 + resamples, n) matrix: the sorted data first, then sorted resamples."""
    rng = np.random.default_rng(seed)
    out = []
    for p in points:
        x = p.samples
        rows = x[None, :]
        if resamples:
            rows = np.vstack([rows, x[rng.integers(0, x.size, size=(resamples, x.size))]])
        out.append(np.sort(rows, axis=1))
    return out


def _slower(a: FloatArray, b: FloatArray, alpha: float, *, first: bool) -> NDArray[np.bool_]:
    """Per row: is ``a`` (sorted rows) significantly slower than ``b`` (sorted rows)?

    ``first``: row 0 is the data, not a resample.
    """
    med_a, med_b = np.median(a, axis=1), np.median(b, axis=1)
    high_a = a[:, a.shape[1] - 1 - median_ci_rank(a.shape[1])]
    low_b = b[:, median_ci_rank(b.shape[1])]
    disjoint = high_a < low_b
    if a.shape[1] < 2 or b.shape[1] < 2:
        return np.asarray(disjoint)
    p = rank_test_rows(a, b)
    if first:
        # the data themselves: the test qbench reports elsewhere (exact for small samples without ties)
        with np.errstate(all="ignore"):
            p[0] = stats.mannwhitneyu(a[0], b[0], alternative="two-sided").pvalue
    rejected = np.nan_to_num(p, nan=1.0) < alpha
    return np.asarray(disjoint | (rejected & (med_a < med_b)))


def _choose(points: Sequence[Point], reps: list[FloatArray], alpha: float) -> tuple[NDArray[np.intp], ...]:
    """Per replicate: the best point and the recommended point."""
    medians = np.column_stack([np.median(r, axis=1) for r in reps])
    best = np.argmax(medians, axis=1)
    chosen = best.copy()
    for b in np.unique(best):
        rows = np.flatnonzero(best == b)
        open_rows = np.ones(rows.size, dtype=bool)
        curve = sorted(
            (i for i, p in enumerate(points) if p.curve == points[b].curve and p.workers < points[b].workers),
            key=lambda i: points[i].workers,
        )
        for i in curve:
            if not open_rows.any():
                break
            fine = ~_slower(reps[i][rows], reps[b][rows], alpha, first=bool(rows[0] == 0)) & open_rows
            chosen[rows[fine]] = i
            open_rows &= ~fine
    return best, chosen


def stable_knee(
    points: Sequence[Point], *, alpha: float, resamples: int = STABILITY_RESAMPLES, seed: int = STABILITY_SEED
) -> Pick:
    """The best point, the recommended point and the recommendation's bootstrap stability.

    Args:
        points: every config of one workload and storage setting (non-empty; each with
            at least one finite iteration).
        alpha: significance level of the rank test.
        resamples: bootstrap resamples for the stability (0: none, stability NaN).
        seed: seed of the resampling.
    """
    reps = _replicates(points, resamples, seed)
    best, chosen = _choose(points, reps, alpha)
    picked = np.array([points[i].workers for i in chosen])
    stability = float(np.mean(picked[1:] == picked[0])) if resamples else math.nan
    return Pick(int(best[0]), int(chosen[0]), stability, resamples)


def significantly_slower(a: FloatArray, b: FloatArray, *, alpha: float) -> bool:
    """The stable-knee rule's test on the data: is ``a`` significantly slower than ``b``?

    Either side may be empty (a job that failed): no iterations are slower than any, and
    two empty sides are not told apart.
    """
    x, y = np.sort(a[np.isfinite(a)])[None, :], np.sort(b[np.isfinite(b)])[None, :]
    if x.size == 0 or y.size == 0:
        return bool(x.size == 0 and y.size > 0)
    return bool(_slower(x, y, alpha, first=True)[0])
