"""The Universal Scalability Law's curve, its derivatives, and its coefficients' standard errors.

    X(N) = lam * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

The fits that find the coefficients live in :mod:`qbench.analysis.fits`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# Coefficient order in parameter vectors: lam, sigma, kappa.
LAM, SIGMA, KAPPA = 0, 1, 2


def usl_throughput(n: FloatArray, lam: float, sigma: float, kappa: float) -> FloatArray:
    """X(N) = lam*N / (1 + sigma*(N-1) + kappa*N*(N-1)), elementwise."""
    return np.asarray(lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)), dtype=float)


def jacobian(n: FloatArray, theta: FloatArray) -> FloatArray:
    """d X(N) / d (lam, sigma, kappa), one row per point."""
    lam, sigma, kappa = theta
    denom = 1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)
    d_sigma = -lam * n * (n - 1.0) / denom**2
    return np.column_stack((n / denom, d_sigma, d_sigma * n))


def standard_errors(n: FloatArray, theta: FloatArray, sse: float, n_params: int) -> list[float | None]:
    """Asymptotic standard errors, as R's ``nls`` and ``usl`` compute them.

    The Jacobian covers every coefficient of the model, also one held at a
    bound, so a coefficient at 0 still reports how well the data pin it.
    """
    dof = n.size - n_params
    jac = jacobian(n, theta)[:, :n_params]
    # Column scaling keeps J^T J invertible in floating point when lam is
    # large and kappa tiny.
    scale = np.linalg.norm(jac, axis=0)
    if dof <= 0 or not np.all(np.isfinite(scale)) or np.any(scale == 0):
        return [None] * n_params
    scaled = jac / scale
    try:
        cov = np.linalg.inv(scaled.T @ scaled) / np.outer(scale, scale) * (sse / dof)
    except np.linalg.LinAlgError:
        return [None] * n_params
    out: list[float | None] = []
    for var in np.diag(cov):
        out.append(math.sqrt(var) if math.isfinite(var) and var >= 0 else None)
    return out
