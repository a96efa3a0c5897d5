"""Scaling fits: throughput against concurrency, by the USL and by Amdahl's law.

The Universal Scalability Law models throughput at concurrency ``N`` as

    X(N) = lam * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

where ``lam`` is the throughput one unit of concurrency would deliver alone,
``sigma`` the contention (serialisation, e.g. the SQLite write lock) and
``kappa`` the coherency cost (crosstalk, retries). Amdahl's law is the same
curve with ``kappa = 0``.

The parameterisation is that of the R package ``usl`` (Stefan Moeding,
CRAN, version 2 and later): all three coefficients are fitted by bounded
nonlinear least squares, ``lam`` is *not* pinned to the measured X(1), and
standard errors come from the Jacobian at the optimum scaled by the residual
variance on ``points - parameters`` degrees of freedom, as ``nls`` does
(:mod:`qbench.analysis.usl` holds the curve and those errors).

A fit that cannot be trusted says so through :class:`FitStatus` instead of
inventing numbers: too few concurrency levels, a flat curve, an optimiser
failure, or a poor R^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares

from qbench.analysis.usl import KAPPA, LAM, SIGMA, jacobian, standard_errors
from qbench.analysis.usl import usl_throughput as usl_throughput  # the curve the fits fit, public here too
from qbench.errors import FitInputError

FloatArray = NDArray[np.float64]

# Distinct concurrency levels needed: one more than the coefficients, so the
# fit keeps at least one degree of freedom to judge itself by.
USL_MIN_LEVELS = 4
AMDAHL_MIN_LEVELS = 3
# Below this R^2 the curve explains too little of the data to act on.
POOR_R_SQUARED = 0.8
# Per-level means closer than this (relative) are one constant throughput.
FLAT_RELATIVE_SPREAD = 1e-9

_UPPER = np.array([np.inf, 1.0, 1.0])
_START_FLOOR = np.array([1e-300, 1e-12, 1e-15])
# Start grid for sigma and kappa; lam is solved exactly for each grid point.
_SIGMA_GRID = np.concatenate(([0.0], np.logspace(-6.0, 0.0, 25)))
_KAPPA_GRID = np.concatenate(([0.0], np.logspace(-9.0, 0.0, 28)))
_STARTS_PER_MODEL = 3
# Which of (lam, sigma, kappa) each candidate fit leaves free; the others are
# held at their lower bound 0. The full model comes first.
_CANDIDATES = (
    (True, True, True),
    (True, True, False),
    (True, False, True),
    (True, False, False),
)
# Tolerances well below what 4+ significant figures need; the problems are
# tiny, so the extra iterations cost nothing.
_TOL = 1e-15
_MAX_NFEV = 2000
# One curve's polished starts: (free coefficients, start) -> coefficients, or why the solver failed.
_Solved = dict[tuple[tuple[bool, bool, bool], bytes], FloatArray | str]


class FitStatus(StrEnum):
    """Whether a scaling fit produced coefficients worth reading."""

    OK = "ok"
    TOO_FEW_POINTS = "too_few_points"
    FLAT = "flat"
    FAILED = "failed"
    POOR = "poor_fit"


@dataclass(frozen=True)
class ScalingFit:
    """One fitted scaling curve, or the reason there is none.

    Coefficients are ``None`` unless the status is OK or POOR.
    """

    # "usl" or "amdahl"
    model: str
    status: FitStatus
    # one sentence: why this status
    message: str
    # number of (concurrency, throughput) points given, repeats included
    points: int
    # throughput per unit of concurrency at N=1, fitted (units of x)
    lam: float | None = None
    lam_se: float | None = None
    # contention, in [0, 1]
    sigma: float | None = None
    sigma_se: float | None = None
    # coherency / crosstalk, in [0, 1]; exactly 0 for Amdahl (kappa_se None)
    kappa: float | None = None
    kappa_se: float | None = None
    r_squared: float | None = None
    # concurrency of peak throughput; inf when kappa == 0 (no peak)
    n_star: float | None = None
    # throughput at n_star; for kappa == 0 the asymptote lam / sigma
    x_max: float | None = None

    def predict(self, n: ArrayLike) -> FloatArray:
        """Throughput the fitted curve gives at concurrency ``n``.

        Raises:
            ValueError: the fit has no coefficients (see ``status``).
        """
        if self.lam is None or self.sigma is None or self.kappa is None:
            raise FitInputError(f"no {self.model} coefficients to predict with: {self.message}")
        return usl_throughput(np.asarray(n, dtype=float), self.lam, self.sigma, self.kappa)


def fit_usl(n: Sequence[float], x: Sequence[float]) -> ScalingFit:
    """Fit the Universal Scalability Law to throughput ``x`` at concurrency ``n``.

    Args:
        n: concurrency of each point (workers, threads); repeats are allowed,
            e.g. several iterations per level, and all points are fitted.
        x: throughput of each point, in any unit; ``lam`` comes out in it.

    Returns:
        The fit; read ``status`` before the coefficients.

    Raises:
        ValueError: inputs of unequal length, non-finite, ``n <= 0`` or ``x < 0``.
    """
    return _fit("usl", n, x, free_kappa=True)


def fit_amdahl(n: Sequence[float], x: Sequence[float]) -> ScalingFit:
    """Fit Amdahl's law (the USL with ``kappa = 0``) to ``x`` at concurrency ``n``.

    Takes the same arguments as :func:`fit_usl`; ``kappa`` is exactly 0 and
    ``kappa_se`` is None.

    Raises:
        ValueError: inputs of unequal length, non-finite, ``n <= 0`` or ``x < 0``.
    """
    return _fit("amdahl", n, x, free_kappa=False)


def fit_both(n: Sequence[float], x: Sequence[float]) -> tuple[ScalingFit, ScalingFit]:
    """:func:`fit_usl` and :func:`fit_amdahl` of one curve: the same two fits for less work, as
    every start Amdahl's law polishes is one of the USL's (those holding kappa at 0)."""
    solved: _Solved = {}
    return _fit("usl", n, x, free_kappa=True, solved=solved), _fit(
        "amdahl", n, x, free_kappa=False, solved=solved
    )


def _fit(
    model: str,
    n_in: Sequence[float],
    x_in: Sequence[float],
    *,
    free_kappa: bool,
    solved: _Solved | None = None,
) -> ScalingFit:
    n, x = _validated(n_in, x_in)
    levels, inverse = np.unique(n, return_inverse=True)
    needed = USL_MIN_LEVELS if free_kappa else AMDAHL_MIN_LEVELS
    n_params = 3 if free_kappa else 2
    if levels.size < needed:
        return ScalingFit(
            model,
            FitStatus.TOO_FEW_POINTS,
            f"{model} needs at least {needed} distinct concurrency levels to fit {n_params} "
            f"coefficients; got {levels.size} ({n.size} point{'' if n.size == 1 else 's'}).",
            n.size,
        )
    counts = np.bincount(inverse).astype(float)
    means = np.bincount(inverse, weights=x) / counts
    top = float(np.max(np.abs(means)))
    if top == 0.0 or float(np.ptp(means)) / top < FLAT_RELATIVE_SPREAD:
        return ScalingFit(
            model,
            FitStatus.FLAT,
            f"throughput is the same at all {levels.size} concurrency levels, "
            "so there is no scaling curve to fit.",
            n.size,
        )

    theta, failure = _search(
        n, x, levels, means, counts, free_kappa=free_kappa, solved=solved if solved is not None else {}
    )
    if theta is None:
        return ScalingFit(model, FitStatus.FAILED, f"the {model} optimiser failed: {failure}.", n.size)
    return _result(model, n, x, theta, n_params)


def _search(
    n: FloatArray,
    x: FloatArray,
    levels: FloatArray,
    means: FloatArray,
    counts: FloatArray,
    *,
    free_kappa: bool,
    solved: _Solved,
) -> tuple[FloatArray | None, str]:
    """Least-squares coefficients over the box, or None and why not.

    The constrained optimum often sits on a bound (kappa = 0 for a curve
    without a peak), which an interior solver only creeps towards; so each
    bound at 0 is also tried exactly, as a candidate with that coefficient held.
    ``solved`` holds the starts already polished on these data (by the other model).
    """
    candidates = [c for c in _CANDIDATES if free_kappa or not c[KAPPA]]
    # Residuals below 1e-10 of the data are rounding noise, not a better fit.
    noise = 1e-20 * float(x @ x)
    best: tuple[float, FloatArray] | None = None
    with np.errstate(all="ignore"):
        for free in candidates:
            failures: list[str] = []
            for start in _starts(levels, means, counts, free):
                theta = _polished(n, x, start, free, solved)
                if isinstance(theta, str):
                    failures.append(theta)
                    continue
                sse = _sse(n, x, theta)
                if not (np.all(np.isfinite(theta)) and math.isfinite(sse)):
                    failures.append("non-finite coefficients")
                    continue
                if best is None or _improves(sse, sum(free), best, noise):
                    best = (sse, theta)
            # Without a solution of the full model (the first candidate) the
            # optimum is unknown; a fit held on the bounds would pass a
            # failure off as a result.
            if best is None:
                return None, failures[0] if failures else "no usable start"
    assert best is not None  # for mypy: the loop returns when the first candidate fails
    return best[1], ""


def _polished(
    n: FloatArray, x: FloatArray, start: FloatArray, free: tuple[bool, bool, bool], solved: _Solved
) -> FloatArray | str:
    """:func:`_solve` of one start, or why it failed; each worked out once per curve."""
    key = (free, start.tobytes())
    if key not in solved:
        try:
            solved[key] = _solve(n, x, start, np.array(free))
        except (ValueError, ArithmeticError, RuntimeError, np.linalg.LinAlgError) as exc:
            solved[key] = str(exc) or type(exc).__name__
    return solved[key]


def _validated(n_in: Sequence[float], x_in: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    try:
        n = np.asarray(n_in, dtype=float)
        x = np.asarray(x_in, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitInputError(f"n and x must be sequences of numbers: {exc}") from exc
    if n.ndim != 1 or x.ndim != 1:
        raise FitInputError(f"n and x must be one-dimensional, got shapes {n.shape} and {x.shape}")
    if n.size != x.size:
        raise FitInputError(f"n and x must have the same length, got {n.size} and {x.size}")
    for name, arr in (("n", n), ("x", x)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise FitInputError(f"{name}[{bad[0]}] = {arr[bad[0]]} is not finite")
    bad = np.flatnonzero(n <= 0)
    if bad.size:
        raise FitInputError(f"n[{bad[0]}] = {n[bad[0]]:g}: concurrency must be > 0")
    bad = np.flatnonzero(x < 0)
    if bad.size:
        raise FitInputError(f"x[{bad[0]}] = {x[bad[0]]:g}: throughput must be >= 0")
    return n, x


def _starts(
    levels: FloatArray, means: FloatArray, counts: FloatArray, free: tuple[bool, bool, bool]
) -> list[FloatArray]:
    """Best grid points for one candidate, each with its exact least-squares lam.

    Repeated points at one level weigh like their mean counted ``counts``
    times, so the grid works on level means and stays cheap.
    """
    sigmas = _SIGMA_GRID if free[SIGMA] else np.zeros(1)
    kappas = _KAPPA_GRID if free[KAPPA] else np.zeros(1)
    s_mesh, k_mesh = np.meshgrid(sigmas, kappas, indexing="ij")
    s, k = s_mesh.ravel(), k_mesh.ravel()
    shape = levels / (1.0 + s[:, None] * (levels - 1.0) + k[:, None] * levels * (levels - 1.0))
    lam = (shape * counts) @ means / ((shape * shape) @ counts)
    sse = ((lam[:, None] * shape - means) ** 2) @ counts
    order = np.argsort(sse)[:_STARTS_PER_MODEL]
    return [np.array([lam[i], s[i], k[i]]) for i in order if lam[i] > 0]


def _solve(n: FloatArray, x: FloatArray, start: FloatArray, free: NDArray[np.bool_]) -> FloatArray:
    """Polish one start by bounded least squares on the free coefficients."""
    theta = start.copy()
    if free.sum() == 1:
        # lam alone enters linearly: its least-squares value is exact.
        shape = usl_throughput(n, 1.0, theta[SIGMA], theta[KAPPA])
        theta[LAM] = float(shape @ x / (shape @ shape))
        return theta
    lower = np.zeros(int(free.sum()))
    upper = _UPPER[free]
    # Keep the start strictly inside the box; the solver requires feasibility.
    x0 = np.clip(start[free], _START_FLOOR[free], upper * (1.0 - 1e-9))

    def residuals(q: FloatArray) -> FloatArray:
        theta[free] = q
        return usl_throughput(n, theta[LAM], theta[SIGMA], theta[KAPPA]) - x

    def derivatives(q: FloatArray) -> FloatArray:
        theta[free] = q
        return jacobian(n, theta)[:, free]

    res = least_squares(
        residuals,
        x0,
        jac=derivatives,
        bounds=(lower, upper),
        method="trf",
        x_scale="jac",
        ftol=_TOL,
        xtol=_TOL,
        gtol=_TOL,
        max_nfev=_MAX_NFEV,
    )
    if res.status <= 0:
        raise RuntimeError(res.message)
    theta[free] = res.x
    return theta


def _sse(n: FloatArray, x: FloatArray, theta: FloatArray) -> float:
    resid = usl_throughput(n, theta[LAM], theta[SIGMA], theta[KAPPA]) - x
    return float(resid @ resid)


def _improves(sse: float, n_free: int, best: tuple[float, FloatArray], noise: float) -> bool:
    """Whether a solution beats ``best``, preferring fewer free coefficients on a tie.

    A tie goes to the candidate holding a bound because it holds it exactly,
    where the freer one only approaches it.
    """
    best_sse, best_theta = best
    if sse < best_sse * (1.0 - 1e-9) - noise:
        return True
    best_free = 1 + int(best_theta[SIGMA] != 0.0) + int(best_theta[KAPPA] != 0.0)
    return sse <= best_sse * (1.0 + 1e-9) + noise and n_free < best_free


def _result(model: str, n: FloatArray, x: FloatArray, theta: FloatArray, n_params: int) -> ScalingFit:
    lam, sigma, kappa = (float(v) for v in theta)
    sse = _sse(n, x, theta)
    sst = float(np.sum((x - x.mean()) ** 2))
    r_squared = 1.0 - sse / sst
    ses = standard_errors(n, theta, sse, n_params)
    if kappa > 0.0:
        n_star = math.sqrt((1.0 - sigma) / kappa)
        x_max = float(usl_throughput(np.array(n_star), lam, sigma, kappa))
    else:
        # No coherency term: throughput rises forever towards lam / sigma.
        n_star = math.inf
        x_max = lam / sigma if sigma > 0.0 else math.inf
    where = f"{n.size} points at {np.unique(n).size} concurrency levels"
    if r_squared < POOR_R_SQUARED:
        status = FitStatus.POOR
        message = (
            f"R^2 = {r_squared:.3f} is below {POOR_R_SQUARED}: the {model} curve fits the {where} poorly."
        )
    else:
        status = FitStatus.OK
        if math.isinf(n_star):
            peak = "no peak (kappa = 0)"
        elif n_star < float(np.min(n)):
            peak = f"throughput falls from the smallest level on (N* = {n_star:.3g})"
        else:
            peak = f"peak at N* = {n_star:.3g}"
        message = f"{model} fit to {where}, R^2 = {r_squared:.4f}, {peak}."
    return ScalingFit(
        model=model,
        status=status,
        message=message,
        points=n.size,
        lam=lam,
        lam_se=ses[LAM],
        sigma=sigma,
        sigma_se=ses[SIGMA],
        kappa=kappa,
        kappa_se=ses[KAPPA] if n_params == 3 else None,
        r_squared=r_squared,
        n_star=n_star,
        x_max=x_max,
    )
