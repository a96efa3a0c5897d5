"""Service times: how long each task of a drain is served, drawn once per drain from ``seed``.

``service.ms`` is the median of every distribution, so changing the shape never moves
the middle: ``fixed`` serves every task for exactly the median; ``exponential`` has
scale ``median / ln 2`` (its median is ``scale * ln 2``); ``lognormal`` has
``mu = ln(median)`` and shape ``sigma`` (the standard deviation of the log).

Task ``i`` of the backlog (``id - first_id``) is served for ``seconds(i)`` in every
executor, every worker process and every iteration of a job: the times are a pure
function of (distribution, median, sigma, seed, tasks), 8 bytes a task (none for fixed).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from qbench.kinds import ServiceDist


class ServiceTimes:
    """Seconds of service per backlog task index.

    Args:
        dist: the distribution.
        median_s: its median in seconds (``service.ms / 1000``).
        sigma: the lognormal shape (ignored by the others).
        seed: the seed of the draw (numpy ``Generator(PCG64(seed))``).
        tasks: backlog tasks; an index outside ``[0, tasks)`` (a task from outside the
            backlog) is served for the median.
    """

    def __init__(self, dist: ServiceDist, median_s: float, sigma: float, seed: int, tasks: int) -> None:
        self.dist = ServiceDist(dist)
        self.median_s = float(median_s)
        self._times: npt.NDArray[np.float64] | None = None
        if self.dist is not ServiceDist.FIXED and self.median_s > 0 and tasks > 0:
            self._times = draw(self.dist, self.median_s, sigma, seed, tasks)

    @property
    def fixed(self) -> bool:
        """True when every task takes the median."""
        return self._times is None

    def seconds(self, index: int) -> float:
        times = self._times
        if times is None or not 0 <= index < len(times):
            return self.median_s
        return float(times[index])

    def as_array(self, tasks: int) -> npt.NDArray[np.float64]:
        """Every task's time (a copy for fixed times; the drawn array otherwise)."""
        if self._times is None:
            return np.full(tasks, self.median_s)
        return self._times


def draw(dist: ServiceDist, median_s: float, sigma: float, seed: int, tasks: int) -> npt.NDArray[np.float64]:
    """``tasks`` service times in seconds with median ``median_s``, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    if dist is ServiceDist.EXPONENTIAL:
        return rng.exponential(median_s / math.log(2), tasks)
    if dist is ServiceDist.LOGNORMAL:
        return rng.lognormal(math.log(median_s), sigma, tasks)
    return np.full(tasks, float(median_s))


__all__ = ["ServiceTimes", "draw"]
