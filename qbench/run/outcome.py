"""How a job ends: ``metrics.parquet`` and ``job_status.json``, whatever happened.

``ok`` or ``failed`` (the reason in one line), or ``interrupted`` (Ctrl-C: the
rows measured so far are still written). When the results cannot be written
(a full disk, a read-only directory), the job is recorded as failed with the
OS's own words where that is still possible, and
:class:`~qbench.errors.ResultsError` says what was lost, so the command exits
non-zero naming it. Writes go through the one atomic writer: nothing written
earlier is ever replaced or left half-written.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from qbench import __version__
from qbench.errors import QbenchError, ResultsError, signal_name
from qbench.kinds import JobState, Phase
from qbench.results.columns import (
    META_CONFIG,
    META_SCHEMA_VERSION,
    META_STATUS,
    META_SYSINFO,
    META_VERSION,
    METRICS_FILE,
    SCHEMA_VERSION,
    build_table,
)
from qbench.results.status import JobStatus, write_status
from qbench.results.writer import write_new_file
from qbench.run.row import Row

log = logging.getLogger(__name__)


@dataclass
class JobOutcome:
    ok: bool
    # one line: why the job failed, empty when ok
    reason: str
    metrics_path: Path | None
    # median throughput of the measured iterations (the sweep objective)
    throughput_tps: float | None
    rows: list[Row] = field(default_factory=list)


@dataclass
class JobRecord:
    """Where and what a job writes at its end; filled in as the job gets going."""

    job_dir: Path
    job_num: int
    run_id: str
    config_yaml: str
    started_at: datetime
    started: float
    sysinfo: Mapping[str, Any] | None = None
    config_columns: dict[str, Any] | None = None

    def status(self, state: JobState, reason: str, metrics: Path | None, tps: float | None) -> JobStatus:
        return JobStatus(
            state,
            reason,
            job_num=self.job_num,
            run_id=self.run_id,
            metrics=metrics.name if metrics else None,
            throughput_tps_median=tps,
            started_at=self.started_at.isoformat(),
            elapsed_s=time.perf_counter() - self.started,
        )


def _median_tps(rows: list[Row]) -> float | None:
    measured = [r["throughput_tps"] for r in rows if r["phase"] == Phase.MEASURE and r["throughput_tps"]]
    return statistics.median(measured) if measured else None


def finish(out: JobRecord, rows: list[Row], failure: str) -> JobOutcome:
    """Write ``metrics.parquet`` (when any row was measured), then ``job_status.json``.

    Raises:
        ResultsError: either could not be written (see :func:`_results_lost`).
    """
    median_tps = _median_tps(rows)
    state = JobState.FAILED if failure else JobState.OK
    written: Path | None = None
    if rows:
        try:
            written = _write_metrics(out, rows, state, failure)
        except (OSError, ResultsError) as exc:
            _results_lost(out, failure, exc)
    try:
        write_status(out.job_dir, out.status(state, failure, written, median_tps))
    except (OSError, ResultsError) as exc:
        raise ResultsError(
            f"job {out.job_num}: {JobStatus.FILE} could not be written: {_one_line(exc)}"
            f" (its rows are in {written})"
        ) from exc
    return JobOutcome(not failure, failure, written, median_tps, rows)


def _write_metrics(out: JobRecord, rows: list[Row], state: JobState, reason: str) -> Path:
    assert out.config_columns is not None
    metadata = {
        META_SCHEMA_VERSION: SCHEMA_VERSION,
        META_VERSION: __version__,
        META_CONFIG: out.config_yaml,
        META_SYSINFO: json.dumps(out.sysinfo, sort_keys=True, default=str),
        META_STATUS: json.dumps({"status": str(state), "reason": reason}),
    }
    path = out.job_dir / METRICS_FILE
    write_new_file(path, build_table(rows, out.config_columns, metadata))
    return path


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _results_lost(out: JobRecord, failure: str, exc: BaseException) -> NoReturn:
    """``metrics.parquet`` could not be written: record the job as failed if that still works, and raise.

    Raises:
        ResultsError: naming the OS's error (e.g. 'No space left on device') and whether
            ``job_status.json`` could record it.
    """
    reason = f"{METRICS_FILE} could not be written: {_one_line(exc)}"
    if failure:
        reason += f" (the job had failed already: {failure})"
    try:
        write_status(out.job_dir, out.status(JobState.FAILED, reason, None, None))
        recorded = f"; {JobStatus.FILE} records the failure"
    except (OSError, ResultsError) as status_exc:
        recorded = f"; {JobStatus.FILE} could not be written either: {_one_line(status_exc)}"
    raise ResultsError(f"job {out.job_num}: {reason}{recorded}") from exc


def record_interrupt(out: JobRecord, rows: list[Row], exc: KeyboardInterrupt) -> None:
    """Ctrl-C: write the rows measured so far and an ``interrupted`` status, as far as possible."""
    reason = f"interrupted ({signal_name(exc)})"
    written: Path | None = None
    if rows and out.sysinfo is not None and out.config_columns is not None:
        try:
            written = _write_metrics(out, rows, JobState.INTERRUPTED, reason)
        except (OSError, QbenchError) as write_exc:
            log.error("job %d: the rows measured before the interrupt are lost: %s", out.job_num, write_exc)
    try:
        write_status(out.job_dir, out.status(JobState.INTERRUPTED, reason, written, _median_tps(rows)))
    except (OSError, QbenchError) as write_exc:
        log.error("job %d: %s could not be written: %s", out.job_num, JobStatus.FILE, write_exc)
    log.warning("job %d %s after %d iteration(s)", out.job_num, reason, len(rows))
