"""The Hydra app behind ``python -m qbench``: the only place a job sees Hydra's config objects.

Before Hydra creates any directory, every job of the requested run or sweep
is composed and validated (:mod:`qbench.app.preflight`), so a user mistake
gets one line naming the key, the value and what is allowed, exit status 2,
and nothing written. Each job then runs with a frozen, validated
:class:`~qbench.settings.Config`. The process exits 1 when any job failed,
naming each, and 130 when Ctrl-C or SIGTERM stopped it (:mod:`qbench.app.signals`).
Values from the environment are never shown (:mod:`qbench.app.redact`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from qbench.app import callbacks, failures, launcher, resume, signals
from qbench.app.identity import job_label, stored_yaml
from qbench.app.objective import NEVER_WINS, objective, objective_of_job, slo_of
from qbench.app.paths import conf_dir
from qbench.app.preflight import Preflight, inspect, to_config
from qbench.app.redact import REDACTED, Redaction, redaction
from qbench.app.resources import raise_open_files_limit_to
from qbench.app.schema import register_configs
from qbench.errors import ConfigError, QbenchError, ResultsError, signal_name
from qbench.kinds import JobState, Phase
from qbench.results.status import JobStatus, write_status
from qbench.settings import Config, validate

if TYPE_CHECKING:
    from qbench.run.job import JobOutcome

__all__ = ["REDACTED", "RESUME_ENV", "main"]

log = logging.getLogger("qbench")

# Set by plans: a job whose directory already holds its finished results is kept, not re-run.
RESUME_ENV = resume.RESUME_ENV


def _headline(job_num: int, label: str, outcome: JobOutcome, shown_path: str) -> None:
    """The job's one-line summary in the log."""
    measured = [r for r in outcome.rows if r["phase"] == Phase.MEASURE]
    if not (outcome.ok and measured):
        log.error("job %d (%s) FAILED: %s", job_num, label, outcome.reason)
        return
    last = measured[-1]
    p99 = sorted(r["e2e_latency_p99_ms"] for r in measured if r.get("e2e_latency_p99_ms") is not None)
    busy = sum(r["busy_total"] for r in measured) / max(1, sum(r["transactions"] for r in measured))
    log.info(
        "job %d (%s): %s tasks/s median of %d iterations, ceiling %s tasks/s, busy rate %.3f%%, "
        "e2e p99 %s, audit ok -> %s",
        job_num,
        label,
        f"{outcome.throughput_tps:,.0f}" if outcome.throughput_tps else "n/a",
        len(measured),
        f"{last['ceiling_tps']:,.0f}" if last.get("ceiling_tps") else "n/a",
        100.0 * busy,
        f"{p99[len(p99) // 2]:.1f} ms" if p99 else "n/a",
        shown_path,
    )


def _validated(dcfg: DictConfig, job_dir: Path, job_num: int, hidden: Redaction) -> Config | None:
    try:
        return validate(to_config(dcfg))
    except ConfigError as exc:
        message = hidden.error(exc)
        log.error("qbench: %s", message)
        write_status(job_dir, JobStatus(JobState.FAILED, message, job_num=job_num))
        return None


def _job_redaction(dcfg: DictConfig, hc: DictConfig, job_dir: Path) -> Redaction:
    from hydra.types import RunMode

    container = OmegaConf.to_container(dcfg, resolve=False)
    assert isinstance(container, dict)
    raw: dict[str, Any] = {str(k): v for k, v in container.items()}
    raw["hydra"] = OmegaConf.to_container(hc, resolve=False)
    return redaction(raw, dcfg, multirun=hc.mode == RunMode.MULTIRUN, job_dir=str(job_dir))


def _kept(job_dir: Path, resolved_yaml: str) -> float | None:
    """When resuming: a finished job with this config is kept; anything else is moved aside."""
    kept = resume.finished(job_dir, resolved_yaml)
    if kept is None:
        resume.set_aside(job_dir)
    return kept


def _task(dcfg: DictConfig) -> float:
    """Run one job; return its score for an optimising sweeper (:mod:`qbench.app.objective`)."""
    from hydra.core.hydra_config import HydraConfig

    from qbench.run.job import run_job  # the measurement code: loaded when a job runs, not to refuse one

    hc = cast(DictConfig, HydraConfig.get())
    job_dir = Path(hc.runtime.output_dir)
    job_num = int(OmegaConf.select(hc, "job.num", default=0) or 0)
    signals.job_started(job_num, job_dir)
    hidden = _job_redaction(dcfg, hc, job_dir)
    label = job_label(hc)
    slo_p99_ms = slo_of(OmegaConf.select(hc, "callbacks.aggregate.slo_p99_ms", default=None))
    cfg = _validated(dcfg, job_dir, job_num, hidden)
    if cfg is None:
        signals.job_ended()
        return NEVER_WINS
    resolved_yaml = stored_yaml(dcfg, hidden)
    kept = _kept(job_dir, resolved_yaml) if resume.resume_requested() else None
    if kept is not None:
        log.info("job %d (%s): already done with this config, kept", job_num, label)
        signals.job_ended()
        return objective_of_job(job_dir, slo_p99_ms=slo_p99_ms) if slo_p99_ms else kept
    try:
        outcome = run_job(cfg, job_dir, job_num=job_num, config_yaml=resolved_yaml, redacted=hidden.columns())
    except (QbenchError, OSError) as exc:  # results already there, a full disk: nothing is overwritten
        reason = hidden.text(failures.os_reason(exc) if isinstance(exc, OSError) else str(exc))
        log.error("job %d (%s) failed: %s", job_num, label, reason)
        if isinstance(exc, OSError):
            failures.job_failed(job_dir, reason, job_num)  # its status says so, when it can be written
        else:
            failures.FAILED_HERE.append((str(job_dir), reason))
        signals.job_ended()
        return NEVER_WINS
    shown = REDACTED if hidden.job_dir else str(outcome.metrics_path)
    _headline(job_num, label, outcome, shown)
    signals.job_ended()
    return objective(outcome.rows, ok=outcome.ok, slo_p99_ms=slo_p99_ms)


def _preflight() -> Preflight:
    """Validate the command line; one line and exit 2 (1 for results in the way) when refused."""
    try:
        register_configs()
        return inspect(sys.argv[1:])
    except ResultsError as exc:  # a run's results are in the way: as before, a failed job (exit 1)
        print(f"qbench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except (QbenchError, FileNotFoundError) as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        signals.ignore_signals()
        print(
            f"qbench: interrupted ({signal_name(exc)}) before any job ran; nothing written",
            file=sys.stderr,
        )
        sys.exit(signals.EXIT_INTERRUPTED)


def _report_failures(plan: Preflight) -> None:
    """Name every failed job and a failed aggregation, and exit 1 if there is any."""

    def shown(text: str) -> str:
        return text.replace(str(plan.target), REDACTED) if plan.target_from_env else text

    failed = {os.path.realpath(d): reason for d, reason in callbacks.FAILED_JOBS}
    failed.update((os.path.realpath(d), reason) for d, reason in failures.FAILED_HERE)
    for line in failures.AGGREGATION:
        print(f"qbench: {shown(line)}", file=sys.stderr)
    if failed:
        print(f"qbench: {len(failed)} job(s) failed:", file=sys.stderr)
        for job_dir, reason in sorted(failed.items()):
            print(f"  {shown(job_dir)}: {shown(reason)}", file=sys.stderr)
    if failed or failures.AGGREGATION:
        sys.exit(1)


def main() -> None:
    """Validate the command line, run the job or sweep through Hydra, exit 1 if any job failed."""
    signals.install()
    plan = _preflight()
    if plan.kept is not None:
        print(f"qbench: already done with this config, kept: {plan.shown_target}")
        return
    logging.raiseExceptions = False  # a log file on a full disk: its records are lost, not tracebacks
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's errors reach this function, not its traceback printer
    launcher.install(keep_finished=plan.multirun and resume.resume_requested())
    if plan.multirun and resume.resume_requested():
        if plan.existing and plan.target is not None:
            resume.remember_multirun(plan.target)
    elif plan.existing and plan.target is not None:  # resuming a single run that did not finish ok
        resume.set_aside(plan.target, hydra_files=True)
    raise_open_files_limit_to(plan.open_files)
    callbacks.FAILED_JOBS.clear()
    failures.clear()
    entry = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
    try:
        entry()
    except KeyboardInterrupt as exc:
        signals.on_interrupt(exc, plan)
    except OSError as exc:  # Hydra's own writes (multirun.yaml): one line, the finished jobs aggregated
        signals.on_error(failures.os_reason(exc), plan)
        _report_failures(plan)
        sys.exit(1)
    _report_failures(plan)
