"""Resuming a sweep without touching its finished jobs.

Hydra's basic launcher calls ``hydra.core.utils.run_job`` for every job, and
that rewrites the job's ``.hydra/config.yaml``, ``hydra.yaml`` and
``overrides.yaml`` and appends to its log before the task function even
starts. So when resuming (``QBENCH_RESUME=1``), the basic launcher's
``run_job`` is wrapped: a job whose directory holds a finished job with the
same config is not run at all. It is reported to Hydra as completed with its
stored throughput, and not one of its files changes. (Hydra accepts launchers
only from the ``hydra_plugins`` package, so qbench wraps the basic launcher's
call instead of shipping its own.) With another launcher a finished job's
results are still kept, by the task itself, but not its ``.hydra`` files.

Hydra's own set-up of a job (its directory, ``.hydra/*.yaml``, the log) can fail
too, on a full disk for example. Hydra would end the sweep there with a traceback;
instead the job is recorded as failed with the system's words, and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra._internal import hydra as hydra_run
from hydra._internal.core_plugins import basic_launcher
from hydra.core.utils import JobReturn, JobRuntime
from hydra.core.utils import JobStatus as HydraJobStatus
from omegaconf import DictConfig, OmegaConf

from qbench.app import failures, resume
from qbench.app.identity import hydra_config, job_dir, job_label, stored_yaml, task_config
from qbench.app.objective import NEVER_WINS, objective_of_job, slo_of
from qbench.app.redact import redaction_of

log = logging.getLogger("qbench")

_HYDRA_RUN_JOB = basic_launcher.run_job  # type: ignore[attr-defined]
_HYDRA_SINGLE_RUN_JOB = hydra_run.run_job  # type: ignore[attr-defined]


def kept_job(config: DictConfig) -> JobReturn | None:
    """A completed JobReturn for a job already finished with this config; None when it must run."""
    directory = job_dir(config, multirun=True)
    with hydra_config(config, directory):
        task = task_config(config)
        kept = resume.finished(directory, stored_yaml(task, redaction_of(config, multirun=True)))
    if kept is None:
        return None
    log.info(
        "job %d (%s): already done with this config, kept", int(config.hydra.job.num), job_label(config.hydra)
    )
    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    ret = JobReturn(
        overrides=[str(o) for o in overrides] if isinstance(overrides, list) else [],
        cfg=task,
        working_dir=os.getcwd(),
        task_name=JobRuntime.instance().get("name"),
        status=HydraJobStatus.COMPLETED,
    )
    slo_p99_ms = slo_of(OmegaConf.select(config, "hydra.callbacks.aggregate.slo_p99_ms", default=None))
    ret.return_value = objective_of_job(directory, slo_p99_ms=slo_p99_ms) if slo_p99_ms else kept
    return ret


def _run_or_keep(*args: Any, **kwargs: Any) -> JobReturn:
    config = kwargs.get("config")
    if isinstance(config, DictConfig) and kwargs.get("job_dir_key") == "hydra.sweep.dir":
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():
            resume.restore_multirun(sweep_dir)  # written by the sweeper just before the first job
        kept = kept_job(config)
        if kept is not None:
            return kept
        directory = job_dir(config, multirun=True)
        if resume.holds_results(directory):
            resume.set_aside(directory, hydra_files=True)  # before Hydra rewrites .hydra and the log
    return _HYDRA_RUN_JOB(*args, **kwargs)


def _set_up_failed(config: Any, multirun: bool, exc: OSError) -> JobReturn:
    """A job Hydra could not set up: recorded as failed, reported to Hydra as done, scoring NEVER_WINS."""
    directory = job_dir(config, multirun=multirun)
    job_num = int(OmegaConf.select(config, "hydra.job.num", default=0) or 0) if multirun else 0
    reason = redaction_of(config, multirun=multirun, job_dir=str(directory)).text(
        f"Hydra could not set up the job: {failures.os_reason(exc)}"
    )
    log.error("job %d (%s) failed: %s", job_num, job_label(config.hydra), reason)
    failures.job_failed(directory, reason, job_num)
    ret = JobReturn(cfg=config, working_dir=os.getcwd(), status=HydraJobStatus.COMPLETED)
    ret.return_value = NEVER_WINS
    return ret


def _guarded(run: Callable[..., JobReturn]) -> Callable[..., JobReturn]:
    def run_job(*args: Any, **kwargs: Any) -> JobReturn:
        try:
            return run(*args, **kwargs)
        except OSError as exc:
            config = kwargs.get("config")
            if not isinstance(config, DictConfig):
                raise
            return _set_up_failed(config, kwargs.get("job_dir_key") == "hydra.sweep.dir", exc)

    return run_job


def install(*, keep_finished: bool) -> None:
    """Guard Hydra's set-up of each job; with ``keep_finished``, a finished job is kept, not run again."""
    basic_launcher.run_job = _guarded(_run_or_keep if keep_finished else _HYDRA_RUN_JOB)  # type: ignore[attr-defined]
    hydra_run.run_job = _guarded(_HYDRA_SINGLE_RUN_JOB)  # type: ignore[attr-defined]


def keep_finished_jobs() -> None:
    """From now on, Hydra's basic launcher keeps a finished job instead of running it again."""
    install(keep_finished=True)
