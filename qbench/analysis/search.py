"""A noise-aware golden-section search: the best value of one numeric key in a few jobs, not a grid.

The candidates are a range's values in order (worker counts, offered rates).
The search keeps a bracket around the best and two points inside it, and
drops the part beyond the point that is *significantly slower* than the other
by the stable-knee test (:func:`qbench.analysis.knee.significantly_slower`:
a rank test on the iterations, or disjoint CIs of the medians), never by raw
medians. When the two are not told apart it keeps the side of the smaller
value: qbench recommends the fewest workers not significantly slower than the
best, and a tie is no evidence for more. One point is re-used at every step
(the golden ratio), so each step costs one job; the range's ends are
candidates too (the bracket starts one step outside them).

It stops when the bracket holds a single candidate (``exhausted``), when the
best so far is significantly faster than both of its neighbours in the
range (``separated``: a measured local peak), or when ``max_jobs`` is spent
(``budget``). The answer is the evaluated candidate with the best median; the
status says whether the data separate it from its nearest measured neighbours
(a flat curve is never ``separated``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import numpy as np

from qbench.analysis.knee import FloatArray, significantly_slower

# 1 / golden ratio, squared: the first inner point lies this far into the bracket
_INNER = (3.0 - math.sqrt(5.0)) / 2.0


class SearchStatus(StrEnum):
    SEPARATED = "separated"
    EXHAUSTED = "exhausted"
    BUDGET = "budget"


@dataclass(frozen=True)
class Evaluated:
    """One candidate measured: its index in the range and its measured iterations (empty: it failed)."""

    index: int
    samples: FloatArray

    @property
    def median(self) -> float:
        finite = self.samples[np.isfinite(self.samples)]
        return float(np.median(finite)) if finite.size else -math.inf


@dataclass(frozen=True)
class SearchResult:
    # the evaluated candidate with the best median (index into the range); -1 when none succeeded
    best: int
    status: SearchStatus
    # in the order they ran: one job each
    evaluated: tuple[Evaluated, ...]

    @property
    def jobs(self) -> int:
        return len(self.evaluated)


class _Budget(Exception):
    """The next evaluation would exceed max_jobs."""


def _inner(lo: int, hi: int, kept: int | None) -> tuple[int, int]:
    """Two distinct candidates strictly inside (lo, hi), golden-placed, one of them ``kept`` if given."""
    first = lo + max(1, round(_INNER * (hi - lo))) if kept is None else kept
    other = lo + hi - first
    if other == first:
        other = first + 1 if first + 1 < hi else first - 1
    return min(first, other), max(first, other)


def _separated(best: int, measured: dict[int, FloatArray], n: int, alpha: float) -> bool:
    """``best`` is significantly faster than its nearest measured neighbour on each side (or is an end)."""
    for side in (-1, 1):
        if best + side in (-1, n):
            continue
        neighbours = [i for i in measured if (i - best) * side > 0]
        if not neighbours:
            return False
        nearest = min(neighbours, key=lambda i: abs(i - best))
        if not significantly_slower(measured[nearest], measured[best], alpha=alpha):
            return False
    return True


def _best(measured: dict[int, FloatArray]) -> int:
    """The evaluated candidate with the best median; the smaller value on a tie; -1 when none succeeded."""
    ok = {i: float(np.median(x[np.isfinite(x)])) for i, x in measured.items() if np.isfinite(x).any()}
    return max(sorted(ok), key=lambda i: ok[i]) if ok else -1


def golden_search(
    n: int, measure: Callable[[int], FloatArray], *, alpha: float, max_jobs: int | None = None
) -> SearchResult:
    """Search candidates ``0..n-1`` for the best throughput, measuring each at most once.

    Args:
        n: how many candidates the range holds (>= 1), in increasing order of value.
        measure: runs one job at a candidate; its measured iterations' throughput (empty: it failed).
        alpha: significance level of the rank test.
        max_jobs: stop after this many evaluations (None: as many as the bracket needs).
    """
    measured: dict[int, FloatArray] = {}
    order: list[int] = []

    def get(i: int) -> FloatArray:
        if i not in measured:
            if max_jobs is not None and len(order) >= max_jobs:
                raise _Budget
            measured[i] = np.asarray(measure(i), dtype=float)
            order.append(i)
        return measured[i]

    lo, hi, kept = -1, n, None
    status = SearchStatus.EXHAUSTED
    try:
        while hi - lo > 2:
            c, d = _inner(lo, hi, kept)
            slow_c = significantly_slower(get(c), get(d), alpha=alpha)
            if slow_c:
                lo, kept = c, d
            else:  # d significantly slower, or a tie: the smaller side
                hi, kept = d, c
            best = _best(measured)
            if best >= 0 and _neighbours_measured(best, measured, n) and _separated(best, measured, n, alpha):
                status = SearchStatus.SEPARATED
                break
        else:
            get(lo + 1)
    except _Budget:
        status = SearchStatus.BUDGET
    best = _best(measured)
    if status is SearchStatus.EXHAUSTED and best >= 0 and _separated(best, measured, n, alpha):
        status = SearchStatus.SEPARATED
    return SearchResult(best, status, tuple(Evaluated(i, measured[i]) for i in order))


def _neighbours_measured(best: int, measured: dict[int, FloatArray], n: int) -> bool:
    """Both of ``best``'s neighbours in the range were measured (or lie outside it)."""
    return all(i in measured or i in (-1, n) for i in (best - 1, best + 1))


@cache
def most_jobs(n: int) -> int:
    """The most jobs :func:`golden_search` can run over ``n`` candidates, whatever the data say."""

    @cache
    def worst(lo: int, hi: int, kept: int | None) -> int:
        if hi - lo <= 2:
            return 0 if kept == lo + 1 else 1
        c, d = _inner(lo, hi, kept)
        cost = sum(1 for i in (c, d) if i != kept)
        return cost + max(worst(c, hi, d), worst(lo, d, c))

    return worst(-1, n, None)
