"""Preflight: compose and validate every job of a command line before Hydra writes anything.

A user mistake gets one line naming the key, the value and what is allowed
(:class:`~qbench.errors.UsageError`); the entry point prints it and exits 2
with nothing on disk. Hydra's internals are used here, and only here, to
compose exactly as ``hydra.main`` will: the run mode (``hydra.mode`` or
``-m``), the sweeps in ``hydra.sweeper.params`` and on the command line, each
job's config and directory. A sweep directory that already holds a sweep is
refused unless resuming was asked (:mod:`qbench.app.resume`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from qbench.app import resume
from qbench.app.callbacks import AggregateCallbackConfig
from qbench.app.explain import explain, group_options, one_line
from qbench.app.hydra_checks import check_command, check_hydra_node, check_overrides
from qbench.app.identity import hydra_config, job_dir, stored_yaml, sweep_dir, task_config
from qbench.app.optuna_space import check_optuna_settings, is_optuna
from qbench.app.paths import conf_dir
from qbench.app.plugins import register_sweeper_defaults
from qbench.app.redact import REDACTED, Redaction, hidden_message, redaction_of
from qbench.app.resources import check_resources, files_needed
from qbench.app.sweep import is_multirun, job_combos
from qbench.errors import ConfigError, QbenchError, ResultsError, UsageError
from qbench.kinds import WorkloadKind
from qbench.run.queues.loading import check_queue
from qbench.settings import Config, from_mapping, validate

# Hydra flags that only show things: no job runs, nothing to validate.
_SHOW_ONLY = ("help", "hydra_help", "cfg", "info", "shell_completion")


@dataclass(frozen=True)
class Preflight:
    """What preflight found: the jobs, where they write, and what to do when interrupted."""

    jobs: int = 0
    multirun: bool = False
    # the run directory, or the sweep directory (absolute); None when nothing runs
    target: Path | None = None
    job_dirs: tuple[Path, ...] = ()
    # the sweep's aggregation, when enabled
    aggregate: AggregateCallbackConfig | None = None
    # the target directory comes from the environment: never print it
    target_from_env: bool = False
    # what an earlier run or sweep left in the target ('' when new)
    existing: str = ""
    # a single run that already finished with this config, kept (resuming): its median throughput
    kept: float | None = None
    # open files the largest job needs
    open_files: int = 0

    @property
    def shown_target(self) -> str:
        return REDACTED if self.target_from_env else str(self.target)

    @property
    def quoted_target(self) -> str:
        """The target as a value in a message: quoted, unless it is hidden."""
        return REDACTED if self.target_from_env else repr(str(self.target))


@dataclass(frozen=True)
class _Job:
    directory: Path
    redaction: Redaction
    yaml: str
    open_files: int


def to_config(dcfg: DictConfig) -> Config:
    """The composed job config (no ``hydra`` node) as qbench's Config, not yet validated."""
    container = OmegaConf.to_container(dcfg, resolve=True)
    if not isinstance(container, dict):
        raise ConfigError("config", type(container).__name__, "expected qbench's Config schema")
    container.pop("hydra", None)
    return from_mapping(Config, {str(k): v for k, v in container.items()})


def _search_path(config_dir: str | None) -> ConfigSearchPath:
    """qbench's conf/ first, then --config-dir, as hydra.main composes."""
    search_path = create_config_search_path(str(conf_dir()))
    if config_dir:
        user_dir = Path(config_dir).expanduser().resolve()
        if not user_dir.is_dir():
            raise UsageError(str(ConfigError("--config-dir", config_dir, "expected an existing directory")))
        search_path.prepend(
            provider="command-line", path=f"file://{user_dir}", anchor=SearchPathQuery(provider="schema")
        )
    return search_path


def _compose(composer: Hydra, config_name: str, overrides: list[str], multirun: bool) -> DictConfig:
    try:
        return composer.compose_config(
            config_name,
            overrides,
            run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN,
            with_log_configuration=False,
        )
    except QbenchError:
        raise
    except Exception as exc:  # Hydra and OmegaConf raise many kinds, some not their own
        raise UsageError(explain(exc, overrides)) from None


def _own_db_dir(cfg: Config, directory: Path) -> Config:
    """``db.dir`` naming the job's own directory (Hydra creates it): as null, which means the same."""
    import dataclasses
    import os

    if cfg.db.dir and os.path.abspath(str(cfg.db.dir)) == str(directory) and not directory.exists():
        return dataclasses.replace(cfg, db=dataclasses.replace(cfg.db, dir=None))
    return cfg


def _check_open_loop_tasks(cfg: Config, overrides: list[str]) -> None:
    """``tasks`` given for steady or burst, where the schedule decides how many tasks arrive.

    ``tasks`` has a default, so only the job's own overrides (command line and sweep values) tell.
    """
    if cfg.workload.kind is WorkloadKind.DRAIN:
        return
    for item in overrides:
        if item.lstrip("+~").partition("=")[0].strip() == "tasks":
            raise ConfigError(
                "tasks",
                cfg.tasks,
                f"not used with workload={cfg.workload.kind}: its tasks are the arrivals,"
                " workload.rate x workload.duration_s (set those instead)",
            )


def _check_job(cfg: DictConfig, multirun: bool, overrides: list[str]) -> _Job:
    """Validate one composed job (``hydra`` node included); its directory and stored config."""
    try:
        directory = job_dir(cfg, multirun=multirun)
        with hydra_config(cfg, directory):
            hidden = redaction_of(cfg, multirun=multirun, job_dir=str(directory))
            task = task_config(cfg)
            try:
                checked = validate(_own_db_dir(to_config(task), directory))
                _check_open_loop_tasks(checked, overrides)
                check_resources(checked)
                check_queue(checked)
            except ConfigError as exc:
                raise UsageError(hidden.error(exc)) from None
            return _Job(directory, hidden, stored_yaml(task, hidden), files_needed(checked))
    except ConfigError as exc:
        raise UsageError(one_line(str(exc))) from None
    except QbenchError:
        raise
    except Exception as exc:  # an interpolation that fails only now, a resolver's own error
        raise UsageError(explain(exc, overrides)) from None


def _sweep_jobs(composer: Hydra, base: DictConfig) -> list[_Job]:
    jobs = []
    for num, combo in enumerate(job_combos(composer, base)):
        try:
            cfg = composer.config_loader.load_sweep_config(base, list(combo))
            with open_dict(cfg):
                cfg.hydra.job.id = num
                cfg.hydra.job.num = num
        except Exception as exc:
            raise UsageError(explain(exc, combo)) from None
        jobs.append(_check_job(cfg, True, combo))
    dirs = [job.directory for job in jobs]
    if len(set(dirs)) < len(dirs) or sweep_dir(base) in dirs:
        subdir = OmegaConf.to_container(base.hydra.sweep, resolve=False).get("subdir")  # type: ignore[union-attr]
        raise UsageError(
            str(ConfigError("hydra.sweep.subdir", subdir, "expected a directory of its own for each job"))
        )
    return jobs


def _aggregation(base: DictConfig) -> AggregateCallbackConfig | None:
    node = OmegaConf.select(base, AggregateCallbackConfig.KEY, default=None)
    if node is None:
        return None
    try:
        config = AggregateCallbackConfig.from_mapping(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
    except ConfigError as exc:
        raise UsageError(one_line(str(exc))) from None
    return config if config.enabled else None


def _existing(result: Preflight, jobs: list[_Job]) -> Preflight:
    """Refuse a target that holds results, unless resuming; a finished single run is kept."""
    target = result.target
    assert target is not None
    shown = result.quoted_target
    if target.exists() and not target.is_dir():
        key = "hydra.sweep.dir" if result.multirun else "hydra.run.dir"
        raise UsageError(f"{key}={shown} is not allowed: a file is there, expected a directory")
    if result.multirun:
        found = resume.sweep_contents(target, [job.directory for job in jobs])
        if found and not resume.resume_requested():
            raise UsageError(
                f"hydra.sweep.dir={shown} is not allowed: it already holds a sweep ({found}); "
                f"resume it with {resume.RESUME_ENV}=1 (finished jobs are kept as they are) "
                "or choose a new hydra.sweep.dir"
            )
        return _replace(result, existing=found)
    if not resume.holds_results(target):
        return result
    if not resume.resume_requested():
        raise ResultsError(
            f"hydra.run.dir={shown} already holds a run's results; qbench never overwrites results: "
            f"resume it with {resume.RESUME_ENV}=1 (kept when it finished with this config) "
            "or choose a new hydra.run.dir"
        )
    return _replace(result, existing="a run", kept=resume.finished(target, jobs[0].yaml))


def _replace(result: Preflight, **changes: Any) -> Preflight:
    import dataclasses

    return dataclasses.replace(result, **changes)


def _inspect(composer: Hydra, args: Any) -> Preflight:
    config_name = args.config_name or "config"
    overrides = list(args.overrides)
    try:
        parsed = OverridesParser.create(config_loader=composer.config_loader).parse_overrides(overrides)
    except Exception as exc:
        raise UsageError(explain(exc, overrides)) from None
    check_overrides(parsed, group_options)
    multirun = is_multirun(composer, config_name, args)
    base = _compose(composer, config_name, overrides, multirun)
    check_hydra_node(base, multirun)
    aggregate = _aggregation(base)  # checked for a single run too: a typo is a typo
    trials = check_optuna_settings(base) if multirun and is_optuna(base) else None
    if multirun:
        jobs = _sweep_jobs(composer, base)  # for optuna: each value it may draw, checked once
        target = sweep_dir(base)
    else:
        jobs = [_check_job(base, False, overrides)]
        target = jobs[0].directory
    result = Preflight(
        jobs=trials or len(jobs),
        multirun=multirun,
        target=target,
        job_dirs=tuple(job.directory for job in jobs),
        aggregate=aggregate,
        target_from_env=any(job.redaction.job_dir for job in jobs),
        open_files=max((job.open_files for job in jobs), default=0),
    )
    return _existing(result, jobs)


def _parse_args(argv: Sequence[str]) -> Any:
    """Hydra's flags, parsed as hydra.main will; a bad flag is one line, not a usage screen."""
    parser = get_args_parser()

    def refuse(message: str) -> NoReturn:
        raise UsageError(f"{one_line(message)} (python -m qbench --help lists the flags)")

    parser.error = refuse  # type: ignore[method-assign]
    args, _ = parser.parse_known_args(list(argv))
    return args


def inspect(argv: Sequence[str]) -> Preflight:
    """Compose and validate every job the command line asks for, and where each would write.

    Raises:
        UsageError: the first mistake, in one line (exit status 2).
        ResultsError: a single run into a directory that holds results (exit status 1).
    """
    args = _parse_args(argv)
    check_command(args)
    register_sweeper_defaults()  # before anything composes, --cfg included
    if any(getattr(args, flag, None) for flag in _SHOW_ONLY):
        return Preflight()
    GlobalHydra.instance().clear()
    try:
        search_path = _search_path(args.config_dir)
        composer = Hydra.create_main_hydra2(task_name="qbench", config_search_path=search_path)
        return _inspect(composer, args)
    except UsageError as exc:  # whichever check refused it: no value from the environment is shown
        raise UsageError(hidden_message(str(exc), list(args.overrides))) from None
    finally:
        GlobalHydra.instance().clear()


def preflight(argv: Sequence[str]) -> int:
    """Compose and validate every job the command line asks for; returns how many.

    Raises:
        UsageError: the first mistake, in one line.
    """
    return inspect(argv).jobs
