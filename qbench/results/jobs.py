"""Jobs that did not finish ok: found by their Hydra directory, named with the reason they recorded.

A job directory is any directory holding a ``.hydra/`` directory. A job
whose ``job_status.json`` is missing, unreadable, ``failed`` or
``interrupted``, or that has no ``metrics.parquet``, contributes nothing to
a statistic; it is named, with its reason, so that a missing config is
never silently missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from qbench.kinds import JobState
from qbench.results.columns import METRICS_FILE
from qbench.results.files import HYDRA_DIR, absolute, one_line, walk_dirs
from qbench.results.status import JobStatus, read_status


def job_dirs(paths: Sequence[Path]) -> list[Path]:
    """Every Hydra job directory under ``paths`` (a path may itself be one)."""
    found: dict[Path, None] = {}
    for raw in paths:
        root = Path(raw)
        if not root.is_dir():
            continue
        for directory, names in walk_dirs(root):
            if HYDRA_DIR in names and (directory / HYDRA_DIR).is_dir():
                found[absolute(directory)] = None
    return sorted(found)


def job_problem(job_dir: Path) -> str | None:
    """Why the job in ``job_dir`` counts for nothing (one line), or None when it finished ok."""
    status = read_status(job_dir)
    has_metrics = os.path.lexists(job_dir / METRICS_FILE)
    if status is None:
        what = (
            f"{JobStatus.FILE} is not a status qbench wrote"
            if os.path.lexists(job_dir / JobStatus.FILE)
            else f"no {JobStatus.FILE}"
        )
        return f"job did not finish: {what}" + ("" if has_metrics else f", no {METRICS_FILE}")
    reason = one_line(status.reason) or "no reason recorded"
    if status.state is JobState.FAILED:
        return f"job failed: {reason}"
    if status.state is JobState.INTERRUPTED:
        return f"job interrupted: {reason}"
    if not has_metrics:
        return f"job did not finish: no {METRICS_FILE} (its {JobStatus.FILE} says ok)"
    return None
