"""Hydra callbacks: after a run or a sweep, find the jobs that failed, and aggregate a sweep.

Each job writes ``job_status.json`` in its directory, so this works for any
launcher, including those that run jobs in other processes or on other hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from qbench.analysis.thresholds import Thresholds
from qbench.app import failures
from qbench.errors import ConfigError, QbenchError

log = logging.getLogger(__name__)

# (job dir, reason) of every failed job of the last run or sweep in this process
FAILED_JOBS: list[tuple[str, str]] = []


def failed_jobs(sweep_dir: Path) -> list[tuple[str, str]]:
    """Jobs of a sweep (Hydra job dirs, found by their ``.hydra``) that failed or never finished."""
    from qbench.results.jobs import job_dirs, job_problem  # Arrow: only once jobs have run

    return [(str(d), reason) for d in job_dirs([sweep_dir]) if (reason := job_problem(d)) is not None]


class JobStatusCallback(Callback):
    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        job_dir = Path(config.hydra.runtime.output_dir)
        from qbench.results.jobs import job_problem  # Arrow: only once the job has run

        reason = job_problem(job_dir)
        FAILED_JOBS[:] = [] if reason is None else [(str(job_dir), reason)]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        FAILED_JOBS[:] = failed_jobs(Path(config.hydra.sweep.dir))


@dataclass(frozen=True)
class AggregateCallbackConfig:
    """The typed config of :class:`AggregateCallback` (``hydra.callbacks.aggregate`` in conf/config.yaml)."""

    KEY: ClassVar[str] = "hydra.callbacks.aggregate"

    # aggregate the sweep directory when a multirun ends
    enabled: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AggregateCallbackConfig:
        """Checked config from the callback's node (``_target_`` aside).

        Raises:
            ConfigError: naming the key under ``hydra.callbacks.aggregate``.
        """
        rest = {str(k): v for k, v in values.items() if k != "_target_"}
        enabled = rest.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{cls.KEY}.enabled", enabled, "expected true or false")
        return cls(enabled, Thresholds.from_mapping(rest, f"{cls.KEY}."))


class AggregateCallback(Callback):
    """Aggregate the sweep directory when a multirun ends (thresholds: :class:`Thresholds`)."""

    def __init__(self, **values: Any) -> None:
        self.config = AggregateCallbackConfig.from_mapping(values)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.config.enabled:
            return
        from qbench.analysis.pipeline import aggregate  # pandas, scipy, matplotlib: only when a sweep ends

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = aggregate([sweep_dir], sweep_dir, self.config.thresholds)
        except (QbenchError, OSError) as exc:
            reason = failures.os_reason(exc) if isinstance(exc, OSError) else str(exc).splitlines()[0]
            log.error("aggregation of %s failed: %s", sweep_dir, reason)
            failures.AGGREGATION.append(f"aggregation of {sweep_dir} failed: {reason}")
            return
        for path, reason in result.loaded.skipped:
            log.warning("aggregation left out %s: %s", path, reason)
        unfinished = result.loaded.jobs
        log.info(
            "aggregated %d job(s) into %s (report.md, report.html)%s",
            len(result.loaded.files),
            sweep_dir,
            f"; {len(unfinished)} job(s) failed or did not finish" if unfinished else "",
        )
