"""The Hydra app behind ``python -m qbench``: the only place a job sees Hydra's config objects.

Before Hydra creates any directory, every job of the requested run or sweep
is composed and validated (:mod:`qbench.app.preflight`), so a user mistake
gets one line naming the key, the value and what is allowed, exit status 2,
and nothing written. Each job then runs with a frozen, validated
:class:`~qbench.settings.Config`. The process exits 1 when any job failed,
naming each.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from qbench.app import callbacks
from qbench.app.paths import conf_dir
from qbench.app.preflight import preflight, to_config
from qbench.app.schema import register_configs
from qbench.errors import ConfigError, QbenchError
from qbench.kinds import JobState, Phase
from qbench.results.status import JobStatus, read_status, write_status
from qbench.settings import Config, validate

if TYPE_CHECKING:
    from qbench.run.job import JobOutcome

log = logging.getLogger("qbench")

# (job dir, reason) of jobs that failed in this process, for failures no status file can show
_FAILED_HERE: list[tuple[str, str]] = []
_ENV_MARK = "${oc.env:"
REDACTED = "<from environment>"
# Set by plans: a job whose directory already holds its finished results is kept, not re-run.
RESUME_ENV = "QBENCH_RESUME"


def env_paths(dcfg: DictConfig) -> list[tuple[str, ...]]:
    """Paths of the values that come from ``${oc.env:...}``: never copied into results."""
    paths: list[tuple[str, ...]] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, str(key)))
        elif isinstance(node, str) and _ENV_MARK in node:
            paths.append(path)

    walk(OmegaConf.to_container(dcfg, resolve=False), ())
    return paths


def config_yaml(dcfg: DictConfig, redact: list[tuple[str, ...]]) -> str:
    """The resolved config as YAML, with the values at ``redact`` replaced."""
    resolved = OmegaConf.to_container(dcfg, resolve=True)
    for path in redact:
        node: Any = resolved
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = REDACTED
    return OmegaConf.to_yaml(OmegaConf.create(resolved))


def _resume(job_dir: Path, resolved_yaml: str) -> float | None:
    """A finished job with the same config in ``job_dir``: its median throughput; else None.

    Anything else there (a failed or interrupted job, another config) is moved aside,
    never overwritten, so the job can run again.
    """
    from qbench.results.columns import META_CONFIG, METRICS_FILE
    from qbench.results.readers import read_metadata

    metrics = job_dir / METRICS_FILE
    status = read_status(job_dir)
    if metrics.exists():
        try:
            same = read_metadata(metrics).get(META_CONFIG) == resolved_yaml
        except QbenchError:
            same = False
        if same and status is not None and status.state is JobState.OK:
            median = status.throughput_tps_median
            return float(median) if median is not None else float("nan")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        metrics.rename(job_dir / f"{METRICS_FILE}.superseded-{stamp}")
    status_path = job_dir / JobStatus.FILE
    status_path.unlink(missing_ok=True)
    return None


def _headline(job_num: int, label: str, outcome: JobOutcome) -> None:
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
        outcome.metrics_path,
    )


def _validated(dcfg: DictConfig, job_dir: Path, job_num: int) -> Config | None:
    try:
        return validate(to_config(dcfg))
    except ConfigError as exc:
        log.error("qbench: %s", exc)
        write_status(job_dir, JobStatus(JobState.FAILED, str(exc), job_num=job_num))
        return None


def _task(dcfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from qbench.run.job import run_job  # the measurement code: loaded when a job runs, not to refuse one

    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    job_num = int(OmegaConf.select(cast(DictConfig, hc), "job.num", default=0) or 0)
    label = hc.job.override_dirname or "defaults"
    cfg = _validated(dcfg, job_dir, job_num)
    if cfg is None:
        return None
    redact = env_paths(dcfg)
    resolved_yaml = config_yaml(dcfg, redact)
    if os.environ.get(RESUME_ENV) == "1":
        kept = _resume(job_dir, resolved_yaml)
        if kept is not None:
            log.info("job %d (%s): already done with this config, kept", job_num, label)
            return kept
    try:
        outcome = run_job(
            cfg,
            job_dir,
            job_num=job_num,
            config_yaml=resolved_yaml,
            redacted={"_".join(path): REDACTED for path in redact},
        )
    except QbenchError as exc:  # e.g. results already there: nothing is overwritten
        log.error("job %d (%s) failed: %s", job_num, label, exc)
        _FAILED_HERE.append((str(job_dir), str(exc)))
        return None
    _headline(job_num, label, outcome)
    return outcome.throughput_tps


def main() -> None:
    """Validate the command line, run the job or sweep through Hydra, exit 1 if any job failed."""
    register_configs()
    try:
        preflight(sys.argv[1:])
    except (QbenchError, FileNotFoundError) as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        sys.exit(2)

    callbacks.FAILED_JOBS.clear()
    entry = hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_task)
    entry()
    failed = dict(callbacks.FAILED_JOBS)
    failed.update(_FAILED_HERE)
    if failed:
        print(f"qbench: {len(failed)} job(s) failed:", file=sys.stderr)
        for job_dir, reason in sorted(failed.items()):
            print(f"  {job_dir}: {reason}", file=sys.stderr)
        sys.exit(1)
