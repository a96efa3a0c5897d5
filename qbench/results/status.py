"""``job_status.json``: how a job ended, written by the job and read by callbacks, plans and aggregation.

The status is written at every end a job can have (ok, failed, interrupted),
so any launcher, on any host, can tell a finished job from one that failed
or never finished by reading one small file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from qbench.errors import UnreadableResultsError
from qbench.kinds import JobState
from qbench.results.files import MAX_STATUS_BYTES, read_regular
from qbench.results.writer import write_bytes


@dataclass(frozen=True)
class JobStatus:
    FILE: ClassVar[str] = "job_status.json"

    state: JobState
    # one line: why the job failed or stopped; empty when ok
    reason: str = ""
    job_num: int = 0
    run_id: str | None = None
    # the metrics file's name in the job directory, None when nothing was measured
    metrics: str | None = None
    # median throughput of the measured iterations (tasks/s)
    throughput_tps_median: float | None = None
    # wall-clock start of the job (ISO 8601, UTC) and seconds it ran
    started_at: str | None = None
    elapsed_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.state is JobState.OK

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["status"] = str(data.pop("state"))
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobStatus | None:
        """The status in ``text``; None when it is not a status qbench wrote.

        Every field must have its type (a non-finite median or elapsed time is no finished status).
        """
        try:
            data = json.loads(text)
            state = JobState(data.pop("status"))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None
        known = {k: v for k, v in data.items() if k in _FIELD_CHECKS}
        if not all(_FIELD_CHECKS[k](v) for k, v in known.items()):
            return None
        return cls(state, **known)


def _finite_or_none(value: object) -> bool:
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _str_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


_FIELD_CHECKS: dict[str, Callable[[object], bool]] = {
    "reason": lambda v: isinstance(v, str),
    "job_num": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "run_id": _str_or_none,
    "metrics": _str_or_none,
    "started_at": _str_or_none,
    "throughput_tps_median": _finite_or_none,
    "elapsed_s": _finite_or_none,
}


def write_status(job_dir: Path, status: JobStatus) -> Path:
    """Write ``job_status.json`` atomically (replaced when a job is re-run into the same directory)."""
    return write_bytes(Path(job_dir) / JobStatus.FILE, status.to_json().encode())


def read_status(job_dir: Path) -> JobStatus | None:
    """The job's status; None when there is none or it cannot be read.

    Never blocks and never reads much: anything but a regular file of at most
    a megabyte under that name (a FIFO, a directory, a huge file) is no status.
    """
    try:
        text = read_regular(Path(job_dir) / JobStatus.FILE, MAX_STATUS_BYTES).decode("utf-8")
    except (UnreadableResultsError, UnicodeDecodeError):
        return None
    return JobStatus.from_json(text)
