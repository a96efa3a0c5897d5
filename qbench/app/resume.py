"""Running into a directory that already holds results: refused, or resumed when asked.

``QBENCH_RESUME=1`` asks to resume (plans set it for every sweep they run).
A finished job (status ok, same config) is then not launched at all, so not one of
its files is touched, its ``.hydra/*.yaml`` included (:mod:`qbench.app.launcher`);
any other job in the way (failed, interrupted, another config) has its results
moved aside, never overwritten, and runs again. Without it, preflight refuses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from qbench.errors import QbenchError
from qbench.kinds import JobState
from qbench.results.status import JobStatus, read_status

RESUME_ENV = "QBENCH_RESUME"
MULTIRUN_FILE = "multirun.yaml"
_METRICS_FILE = "metrics.parquet"  # qbench.results.columns.METRICS_FILE, without loading Arrow to refuse
_LOG_FILE = "qbench.log"  # Hydra's job log: ${hydra.job.name}.log

# The sweep's multirun.yaml as it was before this process resumed it (restored by the launcher).
_ORIGINAL_MULTIRUN: dict[Path, bytes] = {}


def resume_requested() -> bool:
    return os.environ.get(RESUME_ENV) == "1"


def holds_results(job_dir: Path) -> bool:
    """The directory holds a job: its results, its status, or Hydra's ``.hydra`` (a job that was killed)."""
    return any((job_dir / name).exists() for name in (_METRICS_FILE, JobStatus.FILE, ".hydra"))


def sweep_contents(sweep_dir: Path, job_dirs: list[Path]) -> str:
    """What of an earlier sweep ``sweep_dir`` holds ('' when nothing)."""
    if not sweep_dir.is_dir():
        return ""
    found = []
    if (sweep_dir / MULTIRUN_FILE).exists():
        found.append(MULTIRUN_FILE)
    jobs = {d for d in job_dirs if (d / ".hydra").is_dir() or holds_results(d)}
    jobs |= {h.parent for h in sweep_dir.glob("*/.hydra")}
    if jobs:
        found.append(f"{len(jobs)} job director{'y' if len(jobs) == 1 else 'ies'}")
    return ", ".join(found)


def finished(job_dir: Path, resolved_yaml: str) -> float | None:
    """A job that finished ok with this config in ``job_dir``: its median throughput; else None.

    Reads only: nothing in ``job_dir`` changes.
    """
    status = read_status(job_dir)
    metrics = job_dir / _METRICS_FILE
    if status is None or status.state is not JobState.OK or not metrics.exists():
        return None
    from qbench.results.columns import META_CONFIG
    from qbench.results.readers import read_metadata

    try:
        same = read_metadata(metrics).get(META_CONFIG) == resolved_yaml
    except QbenchError:
        return None
    if not same:
        return None
    median = status.throughput_tps_median
    return float(median) if median is not None else float("nan")


def set_aside(job_dir: Path, *, hydra_files: bool = False) -> None:
    """Move a failed, interrupted or other-config job's files aside so the job can run again.

    Each is renamed ``NAME.superseded-STAMP``, never overwritten or deleted: the results and
    the status, and with ``hydra_files`` (before Hydra launches the job again) its ``.hydra``
    directory and its log too.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    names = [_METRICS_FILE, JobStatus.FILE, *((".hydra", _LOG_FILE) if hydra_files else ())]
    for name in names:
        path = job_dir / name
        if path.exists():
            path.rename(job_dir / f"{name}.superseded-{stamp}")


def remember_multirun(sweep_dir: Path) -> None:
    """Keep the bytes of an earlier sweep's multirun.yaml, which Hydra rewrites when the sweep starts."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    if path.is_file():
        _ORIGINAL_MULTIRUN[path.resolve()] = path.read_bytes()


def restore_multirun(sweep_dir: Path) -> None:
    """Put the earlier multirun.yaml back; this run's goes beside it when it differs."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    original = _ORIGINAL_MULTIRUN.pop(path.resolve(), None)
    if original is None or not path.is_file():
        return
    current = path.read_bytes()
    if current != original:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        path.rename(path.with_name(f"multirun.resumed-{stamp}.yaml"))
        tmp = path.with_name(f".{MULTIRUN_FILE}.restore")
        tmp.write_bytes(original)
        os.replace(tmp, path)
