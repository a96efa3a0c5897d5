"""What failed in this process, for the lines the entry point prints at the end.

A job can fail where no status file shows it (a full disk refuses ``job_status.json``
too), and the aggregation of a sweep can fail after every job finished: both are
recorded here so the process still names them and exits 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qbench.errors import QbenchError
from qbench.kinds import JobState
from qbench.results.status import JobStatus, write_status

log = logging.getLogger("qbench")

# (job dir, reason) of jobs that failed in this process, for failures no status file can show
FAILED_HERE: list[tuple[str, str]] = []
# one line per aggregation that failed in this process
AGGREGATION: list[str] = []


def os_reason(exc: OSError) -> str:
    """An OSError in the system's own words, naming the file: ``cannot write F: No space left on device``."""
    words = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot write {exc.filename}: {words}" if exc.filename else words


def job_failed(job_dir: Path, reason: str, job_num: int) -> None:
    """Record a failed job, and write its ``job_status.json`` saying so when that is still possible."""
    FAILED_HERE.append((str(job_dir), reason))
    try:
        if Path(job_dir).is_dir():
            write_status(job_dir, JobStatus(JobState.FAILED, reason, job_num=job_num))
    except (OSError, QbenchError):
        pass  # the entry point's last lines still name the job and the reason


def clear() -> None:
    FAILED_HERE.clear()
    AGGREGATION.clear()
