"""Preflight: compose and validate every job of a command line before Hydra writes anything.

A user mistake gets one line naming the key, the value and what is allowed
(:class:`~qbench.errors.UsageError`); the entry point prints it and exits 2
with nothing on disk. Hydra's internals are used here, and only here, to
compose exactly as ``hydra.main`` will.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from qbench.app.callbacks import AggregateCallbackConfig
from qbench.app.paths import conf_dir
from qbench.errors import ConfigError, UsageError
from qbench.settings import Config, from_mapping, validate

# Hydra flags that only show things: no job runs, nothing to validate.
_SHOW_ONLY = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve")


def _omegaconf_reason(msg: str) -> str:
    first = msg.strip().splitlines()[0] if msg.strip() else "invalid value"
    if "could not be converted to Integer" in first:
        return "expected an integer"
    if "could not be converted to Float" in first:
        return "expected a number"
    if "could not be converted to Boolean" in first:
        return "expected true or false"
    if "not in" in first and first.startswith("Key"):
        return "unknown key (python -m qbench --cfg job lists every key)"
    return first


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def explain(exc: BaseException, overrides: Sequence[str]) -> str:
    """One line for a Hydra/OmegaConf composition error."""
    text = str(exc)
    missing = re.search(r"Could not find '(.+)/([^'/]+)'", text)
    if missing:
        group, option = missing.groups()
        options = _group_options(group)
        allowed = f"allowed: {', '.join(options)}" if options else f"no such option in group {group}"
        return str(ConfigError(group, option, allowed))
    cause = exc.__cause__ or exc.__context__
    full_key = getattr(cause, "full_key", None) or getattr(exc, "full_key", None)
    if full_key:
        value: object = "?"
        for item in overrides:
            key, _, val = item.lstrip("+~").partition("=")
            if key == full_key:
                value = val
        reason = _omegaconf_reason(str(getattr(cause, "msg", "") or cause or text))
        return str(ConfigError(str(full_key), value, reason))
    ambiguous = re.search(r"Ambiguous value for argument '([^'=]+)=([^']*)'", text)
    if ambiguous:
        key, value = ambiguous.groups()
        return str(ConfigError(key, value, "a list of values is a sweep: add --multirun (-m)"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def to_config(dcfg: DictConfig) -> Config:
    """The composed job config (no ``hydra`` node) as qbench's Config, not yet validated."""
    container = OmegaConf.to_container(dcfg, resolve=True)
    if not isinstance(container, dict):
        raise ConfigError("config", type(container).__name__, "expected qbench's Config schema")
    container.pop("hydra", None)
    return from_mapping(Config, {str(k): v for k, v in container.items()})


def _job_combos(args: Any) -> list[list[str]]:
    """The override list of every job the command line asks for."""
    overrides = list(args.overrides)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        if not args.multirun:
            return [overrides]
        try:
            return [list(c) for c in BasicSweeper.split_arguments(parsed, None)[0]]
        except HydraException:
            # a sweep the basic sweeper cannot expand (e.g. an optimiser's interval):
            # check the fixed values, the jobs check the rest
            return [[o.input_line or "" for o in parsed if not o.is_sweep_override()]]
    except HydraException as exc:
        raise UsageError(explain(exc, overrides)) from None


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


def _check_job(composer: Hydra, args: Any, combo: list[str]) -> None:
    try:
        dcfg = composer.compose_config(
            args.config_name or "config",
            combo,
            run_mode=RunMode.MULTIRUN if args.multirun else RunMode.RUN,
            with_log_configuration=False,
        )
        callback = OmegaConf.select(dcfg, AggregateCallbackConfig.KEY)
        if callback is not None:
            AggregateCallbackConfig.from_mapping(OmegaConf.to_container(callback, resolve=True))  # type: ignore[arg-type]
        with read_write(dcfg), open_dict(dcfg):
            del dcfg["hydra"]
        validate(to_config(dcfg))
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(explain(exc, combo)) from None


def preflight(argv: Sequence[str]) -> int:
    """Compose and validate every job the command line asks for; returns how many.

    Raises:
        UsageError: the first mistake, in one line.
    """
    args, _ = get_args_parser().parse_known_args(list(argv))
    if any(getattr(args, flag, None) for flag in _SHOW_ONLY):
        return 0
    combos = _job_combos(args)
    search_path = _search_path(args.config_dir)
    GlobalHydra.instance().clear()
    try:
        composer = Hydra.create_main_hydra2(task_name="qbench", config_search_path=search_path)
        for combo in combos:
            _check_job(composer, args, combo)
    finally:
        GlobalHydra.instance().clear()
    return len(combos)
