"""What an open-loop iteration measured beyond the drain: arrivals, producer lag, queue depth, bursts.

Latency is counted from each task's *intended* arrival (coordinated omission
corrected, as wrk2 and ``pgbench -R`` do): a stall is charged to every task
that arrived during it, not only to the one that met it. Every time here is
seconds from the clock's start ``t0`` (the executor's ``t_start``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qbench.run.executors.protocol import DrainResult

Times = npt.NDArray[np.float64]

# an arrival enqueued more than this after its intended time is late (arrivals_late)
LATE_THRESHOLD_S = 0.010
# the share of time the queue_depth_p99 column covers (time-weighted)
DEPTH_QUANTILE = 0.99


@dataclass(frozen=True)
class OpenLoop:
    """One open-loop iteration, per task (index = id - first id) and per burst."""

    # the rate the schedule was drawn at, averaged over duration_s (workload.rate for steady)
    offered_rate_tps: float
    # seconds of arrivals (workload.duration_s)
    duration_s: float
    # intended arrival of each task
    intended_s: Times
    # commit of each task's enqueue (NaN: never enqueued)
    enqueued_s: Times
    # each task's first ack (NaN: never)
    acked_s: Times
    # intended arrival to first ack: the stall behind a task counts (NaN: never acknowledged)
    e2e_s: Times
    # intended arrival to first claim (NaN: never claimed)
    wait_s: Times
    # every burst's (start, end); [] for steady
    bursts: list[tuple[float, float]]
    # busy errors the producer met and retried, and its enqueue transactions
    producer_busy_retries: int
    producer_transactions: int

    @property
    def lag_s(self) -> Times:
        """Intended arrival to the commit of its enqueue: how late the producer was."""
        return self.enqueued_s - self.intended_s


def open_loop(
    drain: DrainResult,
    *,
    t0: float,
    intended_s: Times,
    enqueued_s: Times,
    offered_rate_tps: float,
    duration_s: float,
    bursts: list[tuple[float, float]],
    busy_retries: int = 0,
    transactions: int = 0,
) -> OpenLoop:
    """The open-loop record of a drain whose workers' clock started at ``drain.t_start``
    and whose producer counted from ``t0`` (the same instant, in practice)."""
    shift = drain.t_start - t0
    intended = np.asarray(intended_s, dtype=np.float64)
    # the executor counts from t_start, the producer from t0: one shift puts both on t0
    acked = np.asarray(drain.stats.e2e_s, dtype=np.float64) + shift
    claimed = np.asarray(drain.stats.claimed_s, dtype=np.float64) + shift
    return OpenLoop(
        offered_rate_tps=offered_rate_tps,
        duration_s=duration_s,
        intended_s=intended,
        enqueued_s=np.asarray(enqueued_s, dtype=np.float64),
        acked_s=acked,
        e2e_s=acked - intended,
        wait_s=claimed - intended,
        bursts=list(bursts),
        producer_busy_retries=busy_retries,
        producer_transactions=transactions,
    )


def achieved_rate(loop: OpenLoop) -> float | None:
    """Arrivals enqueued / the producer's window: from t0 to the later of duration_s and its last commit."""
    enqueued = loop.enqueued_s[~np.isnan(loop.enqueued_s)]
    if enqueued.size == 0:
        return None
    return float(enqueued.size) / max(loop.duration_s, float(enqueued.max()))


def queue_depth(enqueued_s: Times, acked_s: Times) -> tuple[Times, npt.NDArray[np.int64]]:
    """The exact queue depth (enqueued - acknowledged) as a step function.

    Returns:
        (times, depth): the depth is ``depth[k]`` from ``times[k]`` to ``times[k + 1]``
        (0 before ``times[0]``); an ack at the same instant as an enqueue comes first.
    """
    enq = enqueued_s[~np.isnan(enqueued_s)]
    ack = acked_s[~np.isnan(acked_s)]
    times = np.concatenate((enq, ack))
    steps = np.concatenate((np.ones(enq.size, dtype=np.int64), -np.ones(ack.size, dtype=np.int64)))
    order = np.lexsort((steps, times))
    return times[order], np.cumsum(steps[order])


def depth_quantile(times: Times, depth: npt.NDArray[np.int64], q: float = DEPTH_QUANTILE) -> int:
    """The depth the queue stayed at or below for a share ``q`` of the time from 0 to the last event."""
    if depth.size == 0:
        return 0
    values = np.concatenate(([0], depth[:-1]))
    spans = np.diff(np.concatenate(([0.0], times)))
    total = float(spans.sum())
    if total <= 0:
        return int(depth.max())
    order = np.argsort(values, kind="stable")
    covered = np.cumsum(spans[order])
    index = int(np.searchsorted(covered, q * total, side="left"))
    return int(values[order][min(index, values.size - 1)])


def _depth_at(times: Times, depth: npt.NDArray[np.int64], t: float) -> int:
    k = int(np.searchsorted(times, t, side="right"))
    return int(depth[k - 1]) if k else 0


def burst_drains(loop: OpenLoop, times: Times, depth: npt.NDArray[np.int64]) -> list[float]:
    """Per burst: seconds from its end until the depth is first back to at most its depth at its
    start (0 when it already is at the end); inf when it never was within the iteration."""
    out = []
    for start, end in loop.bursts:
        baseline = _depth_at(times, depth, start)
        k = int(np.searchsorted(times, end, side="right"))
        if (int(depth[k - 1]) if k else 0) <= baseline:
            out.append(0.0)
            continue
        back = np.flatnonzero(depth[k:] <= baseline)
        out.append(float(times[k + back[0]]) - end if back.size else float("inf"))
    return out


__all__ = [
    "DEPTH_QUANTILE",
    "LATE_THRESHOLD_S",
    "OpenLoop",
    "achieved_rate",
    "burst_drains",
    "depth_quantile",
    "open_loop",
    "queue_depth",
]
