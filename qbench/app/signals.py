"""Ctrl-C and SIGTERM: one line, exit 130, the interrupted job marked, the finished jobs aggregated.

SIGTERM is made to behave as SIGINT: its handler raises ``KeyboardInterrupt("SIGTERM")``
(the job's drain takes both over while it runs and hands the signal back once its
connections are closed, :mod:`qbench.run.executors.interrupts`). The job records
``interrupted`` in its ``job_status.json`` (:func:`qbench.run.job.run_job`); should the
signal come before the job could, the entry point writes it. Hydra never reaches its
``on_multirun_end`` callbacks after an interrupt, so the finished jobs of the sweep are
aggregated here.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from qbench.app.redact import REDACTED
from qbench.errors import QbenchError, signal_name
from qbench.kinds import JobState
from qbench.results.status import JobStatus, read_status, write_status

if TYPE_CHECKING:
    from qbench.app.preflight import Preflight

EXIT_INTERRUPTED = 130  # 128 + SIGINT, for SIGTERM too: both mean "stopped by the user"

# (job number, job directory) of the job running now; left set when a signal stops it
_CURRENT: dict[str, tuple[int, Path]] = {}
_STARTED_AT = time.time()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def install() -> None:
    """Make SIGTERM stop qbench as Ctrl-C does (only where Python may handle signals)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def ignore_signals() -> None:
    """From now on SIGINT and SIGTERM are ignored: qbench is saying its last line and exiting."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def job_started(job_num: int, job_dir: Path) -> None:
    _CURRENT["job"] = (job_num, Path(job_dir))


def job_ended() -> None:
    _CURRENT.clear()


def _started_here(plan: Preflight) -> tuple[int, Path] | None:
    """A job Hydra had set up in this process (its ``.hydra`` is new) before the task took over."""
    for num, job_dir in reversed(list(enumerate(plan.job_dirs))):
        hydra_dir = job_dir / ".hydra"
        try:
            fresh = hydra_dir.stat().st_mtime >= _STARTED_AT
        except OSError:
            continue
        if fresh and read_status(job_dir) is None:
            return num, job_dir
    return None


def _mark_interrupted(name: str, plan: Preflight) -> tuple[int, Path] | None:
    """The job that was running; its status says ``interrupted`` if it had none yet."""
    current = _CURRENT.get("job") or _started_here(plan)
    if current is None:
        return None
    job_num, job_dir = current
    if job_dir.is_dir() and read_status(job_dir) is None:
        try:
            write_status(job_dir, JobStatus(JobState.INTERRUPTED, f"interrupted ({name})", job_num=job_num))
        except (OSError, QbenchError):
            pass  # the line below still says what happened; the job counts as not finished
    return current


def _aggregated(plan: Preflight, finished: list[Path]) -> str:
    if plan.aggregate is None:
        return "aggregation is disabled"
    if not finished:
        return "nothing to aggregate"
    assert plan.target is not None
    try:
        from qbench.analysis.pipeline import aggregate  # pandas, scipy, matplotlib: only now

        aggregate(finished, plan.target, plan.aggregate.thresholds)
    except QbenchError as exc:
        return f"aggregation failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    except KeyboardInterrupt:
        return "aggregation interrupted"
    return f"aggregated into {plan.shown_target}"


def _sweep_summary(plan: Preflight, current: tuple[int, Path] | None) -> tuple[str, str]:
    finished = [d for d in plan.job_dirs if (status := read_status(d)) is not None and status.ok]
    if current is not None:
        where = f"during job {current[0]}"
    elif not finished:
        where = "before the first job"
    elif len(finished) == plan.jobs:
        where = "after the last job"
    else:
        where = "between jobs"
    return where, f"{len(finished)} of {plan.jobs} jobs finished, {_aggregated(plan, finished)}"


def on_error(reason: str, plan: Preflight) -> None:
    """Hydra stopped on an error of its own (a full disk): say so in one line, aggregate the finished jobs."""
    current = _CURRENT.get("job")
    job_ended()
    if plan.multirun:
        where, what = _sweep_summary(plan, current)
    else:
        where, what = "during the run", "nothing more was measured"
    if plan.target_from_env and plan.target is not None:
        reason = reason.replace(str(plan.target), REDACTED)
    print(f"qbench: stopped by an error {where}: {reason}; {what}", file=sys.stderr, flush=True)


def on_interrupt(exc: KeyboardInterrupt, plan: Preflight) -> NoReturn:
    """Say in one line what was stopped and what was kept, and exit 130."""
    name = signal_name(exc)
    try:
        current = _mark_interrupted(name, plan)
        if plan.multirun:
            where, what = _sweep_summary(plan, current)
        elif current is not None:
            where, what = "during the run", f"its status (interrupted) is in {plan.shown_target}"
        else:
            where, what = "before the run started", "nothing was measured"
    except KeyboardInterrupt:  # another signal while cleaning up: stop now, still in one line
        where, what = "while cleaning up", "stopped at once"
    ignore_signals()
    print(f"qbench: interrupted ({name}) {where}; {what}", file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)
