"""What a command line asks for: one run or a sweep, and the overrides of every job.

Decided exactly as ``hydra.main`` decides: ``hydra.mode`` (from the command
line or a config) before ``--multirun``; a sweep's jobs are the sweeps in
``hydra.sweeper.params`` followed by the command line's, expanded by
Hydra's basic sweeper.
"""

from __future__ import annotations

import math
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.hydra import Hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, RangeSweep
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from qbench.app.explain import explain
from qbench.app.optuna_space import is_optuna, optuna_combos
from qbench.errors import ConfigError, UsageError

# A sweep larger than this is refused before it is expanded (each job is composed to check it).
MAX_JOBS = 10_000
BASIC_SWEEPER = f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"


def is_multirun(composer: Hydra, config_name: str, args: Any) -> bool:
    """RUN or MULTIRUN, as ``hydra.main`` decides: ``hydra.mode`` first, then ``--multirun``."""
    own_config = not args.config_dir and not args.config_path and config_name == "config"
    if own_config and not any("hydra.mode" in item for item in args.overrides):
        return bool(args.multirun)  # qbench's conf/ sets no hydra.mode: spare a composition
    mode = composer.get_mode(config_name=config_name, overrides=list(args.overrides))
    if mode is None:
        return bool(args.multirun)
    return bool(mode == RunMode.MULTIRUN or args.multirun)


def is_basic_sweeper(base: DictConfig) -> bool:
    return bool(OmegaConf.select(base, "hydra.sweeper._target_", default=None) == BASIC_SWEEPER)


def _sweep_size(override: Override) -> int:
    """How many values a sweep override expands to, counted without expanding it."""
    value = override.value()
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if start is None or stop is None or not step:
            return 1
        return max(0, math.ceil((stop - start) / step))
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    return 1


def _check_size(parsed: list[Override], basic: bool) -> None:
    total = 1
    for override in parsed:
        if not override.is_sweep_override():
            continue
        key, text = override.get_key_element(), override.input_line or ""
        value = text.partition("=")[2]
        if basic and not override.is_discrete_sweep():
            raise UsageError(
                str(
                    ConfigError(
                        key,
                        value,
                        "the basic sweeper takes a list (a,b), range() or choice(); "
                        "interval() needs an optimising sweeper (hydra/sweeper=...)",
                    )
                )
            )
        total *= max(1, _sweep_size(override))
        if total > MAX_JOBS:
            raise UsageError(str(ConfigError(key, value, f"a sweep of at most {MAX_JOBS:,} jobs is allowed")))


def sweep_arguments(base: DictConfig) -> list[str]:
    """The sweep's arguments: ``hydra.sweeper.params`` (the basic and the optuna sweeper's), then the
    command line's task overrides."""
    reads_params = is_basic_sweeper(base) or is_optuna(base)
    params = OmegaConf.select(base, "hydra.sweeper.params", default=None) if reads_params else None
    arguments = [f"{key}={value}" for key, value in (params or {}).items()]
    task = OmegaConf.to_container(base.hydra.overrides.task, resolve=False)
    assert isinstance(task, list)
    return arguments + [str(item) for item in task]


def job_combos(composer: Hydra, base: DictConfig) -> list[list[str]]:
    """The task overrides of every job of the sweep ``base`` describes (its master config).

    Raises:
        UsageError: an override Hydra cannot parse, a sweep the sweeper cannot expand, too many jobs.
    """
    arguments = sweep_arguments(base)
    basic = is_basic_sweeper(base)
    try:
        parsed = OverridesParser.create(config_loader=composer.config_loader).parse_overrides(arguments)
        if is_optuna(base):  # optuna runs n_trials jobs: each value it may draw is checked once
            return optuna_combos(parsed, base)
        _check_size(parsed, basic)
        if not basic:
            # another sweeper decides the values: check the fixed ones, the jobs check the rest
            return [[o.input_line or "" for o in parsed if not o.is_sweep_override()]]
        return [list(combo) for combo in BasicSweeper.split_arguments(parsed, None)[0]]
    except HydraException as exc:
        raise UsageError(explain(exc, arguments)) from None
