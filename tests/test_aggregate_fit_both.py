"""Both fits of a curve at once (aggregation's scaling table) are each fit alone, for less work."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.optimize import least_squares

from qbench.analysis import fits
from qbench.analysis.fits import fit_amdahl, fit_both, fit_usl, usl_throughput

WORKERS = np.repeat(np.array([1, 2, 4, 8, 16], dtype=float), 3)


def curves() -> list[tuple[list[float], list[float]]]:
    """Curves of every fit status: ok with and without a peak, poor, flat, too few levels."""
    rng = np.random.default_rng(11)
    peaked = usl_throughput(WORKERS, 1000.0, 0.05, 0.002) * (1 + rng.normal(0, 0.02, WORKERS.size))
    rising = usl_throughput(WORKERS, 500.0, 0.1, 0.0) * (1 + rng.normal(0, 0.02, WORKERS.size))
    noise = 1000.0 * (1 + rng.normal(0, 0.3, WORKERS.size))
    n = WORKERS.tolist()
    return [
        (n, peaked.tolist()),
        (n, rising.tolist()),
        (n, noise.tolist()),
        (n, [700.0] * WORKERS.size),
        ([1.0, 2.0, 2.0], [100.0, 190.0, 195.0]),
    ]


def test_fit_both_equals_each_fit_alone() -> None:
    statuses = set()
    for n, x in curves():
        usl, amdahl = fit_both(n, x)
        assert usl == fit_usl(n, x)
        assert amdahl == fit_amdahl(n, x)
        statuses |= {str(usl.status), str(amdahl.status)}
    assert statuses >= {"ok", "poor_fit", "flat", "too_few_points"}


def test_fit_both_polishes_amdahls_starts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    solves: list[int] = []
    solve = least_squares

    def counted(*args: Any, **kwargs: Any) -> Any:
        solves.append(1)
        return solve(*args, **kwargs)

    monkeypatch.setattr(fits, "least_squares", counted)
    n, x = curves()[0]
    fit_usl(n, x)
    alone = len(solves)
    fit_amdahl(n, x)
    amdahl = len(solves) - alone
    solves.clear()
    fit_both(n, x)
    assert amdahl > 0 and len(solves) == alone
