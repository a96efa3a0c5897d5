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

    Vectorised (one resample matrix), so a thousand configs take milliseconds.
    """
    arr = _clean(values)
    if arr.size < 3:
        return NAN, NAN
    rng = np.random.default_rng(seed)
    medians = np.median(arr[rng.integers(0, arr.size, size=(resamples, arr.size))], axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
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
    """Is ``b`` different from ``a``? Rank test on the iterations, effect as a ratio of medians with CI."""
    xa, xb = _clean(a), _clean(b)
    med_a = float(np.median(xa)) if xa.size else NAN
    med_b = float(np.median(xb)) if xb.size else NAN
    ratio = med_b / med_a if med_a and not math.isnan(med_a) else NAN
    if xa.size < 2 or xb.size < 2:
        return Comparison(med_a, med_b, ratio, NAN, NAN, NAN, False)
    p_value = float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
    rng = np.random.default_rng(seed)
    ra = np.median(xa[rng.integers(0, xa.size, size=(resamples, xa.size))], axis=1)
    rb = np.median(xb[rng.integers(0, xb.size, size=(resamples, xb.size))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = rb / ra
    ratios = ratios[np.isfinite(ratios)]
    low, high = np.percentile(ratios, [2.5, 97.5]) if ratios.size else (NAN, NAN)
    return Comparison(med_a, med_b, ratio, float(low), float(high), p_value, p_value < alpha)


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
