"""Statistics over measured iterations: coefficients of variation, bootstrap CIs, rank tests.

Analysis never touches SQLite; it works on numbers. The scaling-law fits live
in :mod:`qbench.analysis.fits`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import stats

NAN = float("nan")


Samples = Sequence[float] | NDArray[np.float64]


def _clean(values: Samples) -> NDArray[np.float64]:
    arr: NDArray[np.float64] = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def cv(values: Samples) -> float:
    """Coefficient of variation (sample stdev / mean); NaN with fewer than 2 values."""
    arr = _clean(values)
    if arr.size < 2 or arr.mean() == 0:
        return NAN
    return float(arr.std(ddof=1) / arr.mean())


def bootstrap_median_ci(
    values: Samples, *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the median; (NaN, NaN) with fewer than 3 values.

    One sample of :func:`bootstrap_median_cis`, which says how the resamples are drawn.
    """
    low, high = bootstrap_median_cis([values], resamples=resamples, confidence=confidence, seed=seed)[0]
    return float(low), float(high)


def min_p_value(n1: int, n2: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney U test can reach with n1 and n2 values.

    With no ties the most extreme ranking has probability 1/C(n1+n2, n1) per side, so
    ``2 / C(n1+n2, n1)``: 2 iterations a side can never give p below 1/3, 3 below 0.1,
    4 below 0.029. When this is not below alpha, no slowdown can be declared significant.
    """
    if n1 < 1 or n2 < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


@dataclass(frozen=True)
class Comparison:
    median_a: float
    median_b: float
    # median_b / median_a
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    # two-sided Mann-Whitney U; NaN when either side has fewer than 2 values
    p_value: float
    significant: bool


def compare_samples(
    a: Samples,
    b: Samples,
    *,
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Is ``b`` different from ``a``? Rank test on the iterations, effect as a ratio of medians with CI.

    One pair of :func:`compare_many`, which says how the resamples are drawn.
    """
    return _compare_one(_clean(a), _clean(b), alpha=alpha, resamples=resamples, seed=seed)


def _compare_one(
    xa: NDArray[np.float64], xb: NDArray[np.float64], *, alpha: float, resamples: int, seed: int
) -> Comparison:
    if xa.size < 2 or xb.size < 2:
        med_a = float(np.median(xa)) if xa.size else NAN
        med_b = float(np.median(xb)) if xb.size else NAN
        ratio = med_b / med_a if med_a and not math.isnan(med_a) else NAN
        return Comparison(med_a, med_b, ratio, NAN, NAN, NAN, False)
    return compare_many([(xa, xb)], alpha=alpha, resamples=resamples, seed=seed)[0]


def order_median_ci(values: Samples, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics; (NaN, NaN) with fewer than 3 values.

    The j-th smallest and j-th largest values, j the largest rank whose binomial tail
    stays within (1 - confidence) / 2; with too few values for that, the minimum and
    maximum (coverage 1 - 2^(1-n): 75% at 3 values). No resampling, so it costs a sort.
    """
    arr = np.sort(_clean(values))
    if arr.size < 3:
        return NAN, NAN
    j = median_ci_rank(arr.size, confidence)
    return float(arr[j]), float(arr[arr.size - 1 - j])


@lru_cache(maxsize=256)
def median_ci_rank(n: int, confidence: float = 0.95) -> int:
    """0-based rank of the lower end of the order-statistic CI of the median of n values."""
    return max(int(stats.binom.ppf((1.0 - confidence) / 2.0, n, 0.5)) - 1, 0)


def rank_test_rows(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Two-sided Mann-Whitney U p-values, row by row, by the normal approximation with tie correction.

    What ``scipy.stats.mannwhitneyu`` computes with ``method="asymptotic"`` (continuity
    corrected), vectorised over the rows, for bootstrap resamples (which always hold ties).
    """
    n1, n2 = a.shape[1], b.shape[1]
    both = np.concatenate([a, b], axis=1)
    low = stats.rankdata(both, method="min", axis=1)
    high = stats.rankdata(both, method="max", axis=1)
    u = ((low + high) / 2.0)[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    ties = ((high - low + 1.0) ** 2 - 1.0).sum(axis=1)  # = sum over tie groups of t^3 - t
    variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.abs(u - n1 * n2 / 2.0) - 0.5) / np.sqrt(variance)
    p = np.clip(2.0 * stats.norm.sf(z), 0.0, 1.0)
    return np.where(variance > 0, p, 1.0)


# Elements of one block of resample medians (samples x resamples): about 32 MB of float64.
_BLOCK = 4_000_000


def _by_size(arrays: Sequence[NDArray[np.float64]]) -> dict[int, list[int]]:
    sizes: dict[int, list[int]] = {}
    for i, arr in enumerate(arrays):
        sizes.setdefault(arr.size, []).append(i)
    return sizes


def _median_positions(n: int, resamples: int, rng: np.random.Generator) -> tuple[NDArray[np.intp], ...]:
    """Positions, in sorted data of ``n`` values, of the two middle values of each resample.

    A resample draws ``n`` positions uniformly with replacement; drawn from the sorted
    data, the resample sorted is the data at its positions sorted, so its median is the
    mean of the data at its two middle positions (one position twice for odd ``n``).
    Every sample of ``n`` values shares these positions: a resample median then costs
    two look-ups, not a sort.
    """
    drawn = np.sort(rng.integers(0, n, size=(resamples, n)), axis=1)
    return drawn[:, (n - 1) // 2], drawn[:, n // 2]


def _resample_medians(
    data: NDArray[np.float64], positions: tuple[NDArray[np.intp], ...]
) -> NDArray[np.float64]:
    """Medians of the resamples (columns) of each row of sorted ``data``."""
    low, high = positions
    medians: NDArray[np.float64] = (data[:, low] + data[:, high]) / 2.0
    return medians


def _row_percentiles(values: NDArray[np.float64], q: list[float]) -> NDArray[np.float64]:
    """``np.percentile`` of each row's finite values; NaN for a row without one."""
    out = np.full((values.shape[0], len(q)), NAN)
    finite = np.isfinite(values)
    whole = finite.all(axis=1)
    if whole.any():
        out[whole] = np.percentile(values[whole], q, axis=1).T
    for row in np.flatnonzero(~whole):
        kept = values[row][finite[row]]
        if kept.size:
            out[row] = np.percentile(kept, q)
    return out


def bootstrap_median_cis(
    samples: Sequence[Samples], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> NDArray[np.float64]:
    """Percentile-bootstrap CIs of the medians of samples, as a (samples, 2) array.

    Each sample's finite values are sorted, then resampled by ``resamples`` draws of
    positions with replacement (seeded: the same draws for every sample of one size, as
    :func:`_median_positions` explains). Fewer than 3 values: (NaN, NaN).
    """
    cleaned = [np.sort(_clean(s)) for s in samples]
    out = np.full((len(cleaned), 2), NAN)
    tail = (1.0 - confidence) / 2.0 * 100.0
    for n, members in _by_size(cleaned).items():
        if n < 3:
            continue
        positions = _median_positions(n, resamples, np.random.default_rng(seed))
        data = np.stack([cleaned[i] for i in members])
        step = max(1, _BLOCK // resamples)
        for start in range(0, len(members), step):
            medians = _resample_medians(data[start : start + step], positions)
            out[members[start : start + step]] = np.percentile(medians, [tail, 100.0 - tail], axis=1).T
    return out


def _rank_p_values(xa: NDArray[np.float64], xb: NDArray[np.float64]) -> NDArray[np.float64]:
    """Two-sided Mann-Whitney U p-values of each row pair, by the method ``mannwhitneyu`` picks for
    that pair alone (exact for small samples without ties, else asymptotic)."""
    n1, n2 = xa.shape[1], xb.shape[1]
    both = np.sort(np.concatenate([xa, xb], axis=1), axis=1)
    ties = (both[:, 1:] == both[:, :-1]).any(axis=1)
    asymptotic = ties | (n1 > 8 and n2 > 8)
    p = np.empty(xa.shape[0])
    for method, rows in (("asymptotic", asymptotic), ("exact", ~asymptotic)):
        if rows.any():
            test = stats.mannwhitneyu(xa[rows], xb[rows], axis=1, alternative="two-sided", method=method)
            p[rows] = test.pvalue
    return p


def compare_many(
    pairs: Sequence[tuple[Samples, Samples]], *, alpha: float = 0.05, resamples: int = 2000, seed: int = 0
) -> list[Comparison]:
    """:func:`compare_samples` of each pair, pairs of one size computed together.

    The ratio's CI is a percentile bootstrap: each side's finite values sorted, resampled
    by seeded draws of positions (the first side's draws first, then the second's; the same
    draws for every pair of one size), ratios that are not finite left out.
    """
    cleaned = [(np.sort(_clean(a)), np.sort(_clean(b))) for a, b in pairs]
    out: list[Comparison | None] = [None] * len(cleaned)
    sizes: dict[tuple[int, int], list[int]] = {}
    for i, (xa, xb) in enumerate(cleaned):
        sizes.setdefault((xa.size, xb.size), []).append(i)
    for (na, nb), members in sizes.items():
        if na < 2 or nb < 2:
            for i in members:
                out[i] = _compare_one(*cleaned[i], alpha=alpha, resamples=resamples, seed=seed)
            continue
        xa = np.stack([cleaned[i][0] for i in members])
        xb = np.stack([cleaned[i][1] for i in members])
        p_values = _rank_p_values(xa, xb)
        med_a, med_b = np.median(xa, axis=1), np.median(xb, axis=1)
        rng = np.random.default_rng(seed)
        at_a, at_b = _median_positions(na, resamples, rng), _median_positions(nb, resamples, rng)
        step = max(1, _BLOCK // resamples)
        for start in range(0, len(members), step):
            block = slice(start, start + step)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = _resample_medians(xb[block], at_b) / _resample_medians(xa[block], at_a)
            ratios[~np.isfinite(ratios)] = NAN
            cis = _row_percentiles(ratios, [2.5, 97.5])
            for offset, i in enumerate(members[block]):
                a, b = float(med_a[start + offset]), float(med_b[start + offset])
                ratio = b / a if a and not math.isnan(a) else NAN
                p = float(p_values[start + offset])
                low, high = cis[offset]
                out[i] = Comparison(a, b, ratio, float(low), float(high), p, p < alpha)
    return [c for c in out if c is not None]
