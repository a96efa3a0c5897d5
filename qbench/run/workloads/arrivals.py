"""Arrival schedules of the open-loop workloads: when each task is meant to arrive.

A schedule is a sorted float64 array of offsets (seconds from the clock's
start) inside ``[0, duration_s)``; task ``i`` arrives at ``schedule[i]``. The
rate is piecewise constant: ``rate`` throughout for ``steady``; for ``burst``,
``burst_rate`` inside each burst window (bursts start at 0, ``burst_every_s``,
``2 x burst_every_s``, ... and last ``burst_s``, the last one cut at
``duration_s``) and ``rate`` between them.

Both kinds are drawn in *operational time* ``u = Lambda(t)``, the integral of
the rate from 0 to ``t``, then mapped back through ``Lambda``'s inverse:
``poisson`` is a unit-rate Poisson process there (exponential gaps, so the
piecewise-constant-rate Poisson process in real time), ``uniform`` puts an
arrival at every integer ``u`` (evenly spaced at the current rate). The count
is whatever the process gives (never forced to ``rate x duration_s``). The
same parameters and seed always give the same schedule (a numpy ``Generator``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qbench.kinds import Arrivals, WorkloadKind
from qbench.settings import Config

Schedule = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ArrivalParams:
    # tasks/s outside bursts
    rate: float
    arrivals: Arrivals
    # seconds of arrivals
    duration_s: float
    seed: int
    # burst only (burst_rate 0 = steady): tasks/s inside a burst, seconds between burst starts, burst length
    burst_rate: float = 0.0
    burst_every_s: float = 0.0
    burst_s: float = 0.0

    @property
    def bursty(self) -> bool:
        return self.burst_rate > 0 and self.burst_every_s > 0 and self.burst_s > 0


def arrival_params(cfg: Config) -> ArrivalParams:
    """The schedule a validated steady or burst config asks for."""
    w = cfg.workload
    params = ArrivalParams(w.rate, w.arrivals, w.duration_s, cfg.seed)
    if w.kind is WorkloadKind.BURST:
        params = ArrivalParams(
            w.rate, w.arrivals, w.duration_s, cfg.seed, w.burst_rate, w.burst_every_s, w.burst_s
        )
    return params


def burst_windows(params: ArrivalParams) -> list[tuple[float, float]]:
    """Every burst's (start, end) in seconds from the clock's start; [] for a steady schedule."""
    if not params.bursty:
        return []
    count = math.ceil(params.duration_s / params.burst_every_s)
    starts = [k * params.burst_every_s for k in range(count)]
    return [(s, min(s + params.burst_s, params.duration_s)) for s in starts if s < params.duration_s]


def rate_segments(params: ArrivalParams) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The piecewise-constant rate: boundaries (``m + 1``, from 0 to duration_s) and rates (``m``)."""
    bounds = [0.0]
    rates: list[float] = []
    for start, end in burst_windows(params):
        if start > bounds[-1]:
            bounds.append(start)
            rates.append(params.rate)
        bounds.append(end)
        rates.append(params.burst_rate)
    if bounds[-1] < params.duration_s:
        bounds.append(params.duration_s)
        rates.append(params.rate)
    return np.asarray(bounds, dtype=np.float64), np.asarray(rates, dtype=np.float64)


def mean_rate(params: ArrivalParams) -> float:
    """The rate the schedule is drawn at, averaged over ``duration_s``: its expected arrivals / duration_s."""
    bounds, rates = rate_segments(params)
    return float(np.sum(np.diff(bounds) * rates)) / params.duration_s


def _unit_poisson(total: float, rng: np.random.Generator) -> Schedule:
    """A unit-rate Poisson process on [0, total): cumulated exponential gaps, drawn in chunks."""
    chunks: list[Schedule] = []
    last = 0.0
    while last < total:
        need = total - last
        gaps = rng.exponential(1.0, size=int(need + 6 * math.sqrt(need) + 16))
        times = last + np.cumsum(gaps)
        chunks.append(times)
        last = float(times[-1])
    points = np.concatenate(chunks) if chunks else np.empty(0)
    return points[points < total]


def arrival_schedule(params: ArrivalParams) -> Schedule:
    """The intended arrival offsets, sorted, inside [0, duration_s)."""
    bounds, rates = rate_segments(params)
    cumulative = np.concatenate(([0.0], np.cumsum(np.diff(bounds) * rates)))
    total = float(cumulative[-1])
    if params.arrivals is Arrivals.UNIFORM:
        operational = np.arange(math.ceil(total), dtype=np.float64)
        operational = operational[operational < total]
    else:
        operational = _unit_poisson(total, np.random.default_rng(params.seed))
    segment = np.searchsorted(cumulative, operational, side="right") - 1
    segment = np.minimum(segment, len(rates) - 1)
    times = bounds[segment] + (operational - cumulative[segment]) / rates[segment]
    # rounding must neither leave the window nor reorder neighbours across a boundary
    times = np.maximum.accumulate(np.clip(times, 0.0, None))
    return times[times < params.duration_s]


__all__ = ["ArrivalParams", "Schedule", "arrival_params", "arrival_schedule", "burst_windows", "mean_rate"]
