"""What each job returns to Hydra: the objective an optimising sweeper (``hydra/sweeper=optuna``) maximises.

- the median throughput of the job's measured iterations (tasks/s);
- with ``hydra.callbacks.aggregate.slo_p99_ms`` > 0, that throughput subject to the
  job's latency SLO, judged as the sustainable rate judges it (the median of the
  iterations' end-to-end p99 at most the SLO): a job over it scores
  ``-(p99 / slo_p99_ms)``, below -1, so it never beats a job within the SLO, and
  one nearer the SLO beats one further off;
- a job that failed (its audit, or at all), or whose p99 was not measured while an SLO
  is given, scores ``-inf``: it can never win.

The sweeper must maximise: preflight refuses ``hydra.sweeper.direction`` other than
``maximize`` for an optimising sweeper (qbench registers ``maximize`` as the optuna
sweeper's default, :func:`qbench.app.plugins.register_sweeper_defaults`). The basic
sweeper ignores the value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from qbench.kinds import Phase

# the score of a job that failed: below every other score, so it can never win
NEVER_WINS = -math.inf


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out.append(float(value))
    return out


def objective(rows: Iterable[Mapping[str, Any]], *, ok: bool, slo_p99_ms: float) -> float:
    """The score of one job from its rows (one per iteration; warmup rows are left out).

    Args:
        rows: the job's iterations, each with ``phase``, ``throughput_tps`` and ``e2e_latency_p99_ms``.
        ok: the job finished and its audit passed.
        slo_p99_ms: the latency SLO in milliseconds; 0: none given.
    """
    measured = [r for r in rows if str(r.get("phase")) == Phase.MEASURE]
    throughputs = _finite(r.get("throughput_tps") for r in measured)
    if not ok or not throughputs:
        return NEVER_WINS
    tps = statistics.median(throughputs)
    if slo_p99_ms <= 0:
        return tps
    p99s = _finite(r.get("e2e_latency_p99_ms") for r in measured)
    if not p99s:
        return NEVER_WINS
    p99 = statistics.median(p99s)
    return tps if p99 <= slo_p99_ms else -(p99 / slo_p99_ms)


def objective_of_job(job_dir: Path, *, slo_p99_ms: float) -> float:
    """The score of a finished job kept from an earlier run, from its ``metrics.parquet``."""
    import pyarrow.parquet as pq

    from qbench.results.columns import METRICS_FILE

    metrics = job_dir / METRICS_FILE

    columns = ["phase", "throughput_tps", "e2e_latency_p99_ms"]
    try:
        table = pq.read_table(metrics, columns=columns)
    except (OSError, ValueError, KeyError):
        return NEVER_WINS
    return objective(table.to_pylist(), ok=True, slo_p99_ms=slo_p99_ms)


def slo_of(value: object) -> float:
    """``hydra.callbacks.aggregate.slo_p99_ms`` as preflight checked it (absent: 0, none given)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return 0.0
