"""Checks of Hydra's own settings and flags that Hydra itself leaves to run time.

Each of these passed composition and then failed (with a traceback) once
Hydra started: two commands at once (``-r -m``), a launcher, sweeper or
callback that cannot be built, a logging level that does not exist, a batch
size the sweeper asserts on, a config group given a list or null, an empty
output directory.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

from hydra.core.override_parser.types import Override, ValueType
from hydra.experimental.callback import Callback
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from qbench.app.plugins import PRESET_REQUIRED
from qbench.errors import ConfigError, UsageError

_DIR_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir")
# Hydra nodes whose keys are free (each checked once composed): ``+`` may add keys under them
_OPEN_HYDRA = (
    "hydra.sweeper.",
    "hydra.launcher.",
    "hydra.callbacks.",
    "hydra.job.env_set.",
    "hydra.job_logging.",
    "hydra.hydra_logging.",
)
_COMMANDS = "-r/--run, -m/--multirun, --cfg, --info, -sc/--shell-completion"


def _refuse(key: str, value: object, allowed: str) -> UsageError:
    return UsageError(str(ConfigError(key, value, allowed)))


def check_command(args: Any) -> None:
    """Hydra's flags that cannot go together (Hydra raises a ValueError with a traceback)."""
    given = [
        flag
        for flag, on in (
            ("--run", bool(args.run)),
            ("--multirun", bool(args.multirun)),
            ("--cfg", args.cfg is not None),
            ("--info", args.info is not None),
            ("--shell-completion", bool(args.shell_completion)),
        )
        if on
    ]
    if len(given) > 1:
        raise UsageError(f"{' '.join(given)} together is not allowed: choose one of {_COMMANDS}")
    if args.resolve and args.cfg is None and not args.help:
        raise UsageError("--resolve alone is not allowed: it goes with --cfg or --help")


def _check_form(override: Override, key: str, text: str) -> None:
    """``+hydra.foo`` (silently ignored), ``~workers`` (silently the default), a callback's ``_target_``."""
    from dataclasses import fields

    from qbench.settings import Config

    added = override.is_add() or override.is_force_add()
    if added and key.startswith("hydra.") and not key.startswith(_OPEN_HYDRA):
        raise _refuse(f"+{key}", text, "unknown key (python -m qbench --cfg hydra lists Hydra's settings)")
    if override.is_delete() and key.split(".")[0].split("/")[0] in {f.name for f in fields(Config)}:
        raise UsageError(f"~{key} is not allowed: a qbench key is set, not deleted (write {key}=VALUE)")
    parts = key.split(".")
    if len(parts) == 4 and parts[:2] == ["hydra", "callbacks"] and parts[3] == "_target_":
        raise _refuse(key, text, "a callback's _target_ is not set from the command line")


def check_overrides(parsed: list[Override], group_options: Callable[[str], list[str]]) -> None:
    """Override forms Hydra accepts and then mis-reads or fails on."""
    for override in parsed:
        key = override.key_or_group
        text = (override.input_line or "").partition("=")[2]
        _check_form(override, key, text)
        if key in _DIR_KEYS and not override.is_delete() and not text.strip().strip("'\""):
            raise _refuse(key, text, "expected a directory")
        if override.value_type == ValueType.ELEMENT and isinstance(override.value(), list | dict):
            options = group_options(key)
            if options:
                raise _refuse(
                    key, text, f"expected one option of {', '.join(options)} (to sweep: -m {key}=a,b)"
                )


def _build_check(key: str, node: Any, base: type) -> None:
    """``node`` can be instantiated as a ``base``: a mapping whose ``_target_`` takes its keys."""
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        raise _refuse(
            key, OmegaConf.to_container(node) if isinstance(node, DictConfig) else node, _target(base)
        )
    target = str(node["_target_"])
    try:
        cls = get_class(target)
    except Exception:
        raise _refuse(f"{key}._target_", target, f"expected an importable {base.__name__} class") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise _refuse(f"{key}._target_", target, f"expected a subclass of {base.__name__}")
    params = [name for name in inspect.signature(cls).parameters if name != "_target_"]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(cls).parameters.values()):
        schema = OmegaConf.get_type(node)  # a plugin's **kwargs: the keys its typed config declares
        if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
            return
        params = [f.name for f in dataclasses.fields(schema) if f.name != "_target_"]
    raw = OmegaConf.to_container(node, resolve=False)
    assert isinstance(raw, dict)
    for name, value in raw.items():
        if name != "_target_" and str(name) not in params:
            raise _refuse(f"{key}.{name!s}", value, f"{cls.__name__} takes: {', '.join(params) or 'no keys'}")


def _target(base: type) -> str:
    return f"expected a mapping with the _target_ of a {base.__name__}"


def _levels(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "level":
                yield f"{path}.{key}", value
            else:
                yield from _levels(value, f"{path}.{key}")


def _check_logging(base: DictConfig) -> None:
    known = logging.getLevelNamesMapping()
    for section in ("hydra.job_logging", "hydra.hydra_logging"):
        node = OmegaConf.select(base, section, default=None)
        if node is None:
            continue
        for key, level in _levels(OmegaConf.to_container(node, resolve=False), section):
            if isinstance(level, str) and "${" in level:
                continue  # resolved only while the job runs
            if not (isinstance(level, int) and not isinstance(level, bool)) and str(level) not in known:
                raise _refuse(key, level, f"allowed: {', '.join(sorted(known, key=known.__getitem__))}")


def _check_required(base: DictConfig) -> None:
    """A launcher's or sweeper's key left ``???``, or null where the chosen qbench preset needs a value."""
    choices = OmegaConf.select(base, "hydra.runtime.choices", default=None) or {}
    for section, group in (("hydra.launcher", "hydra/launcher"), ("hydra.sweeper", "hydra/sweeper")):
        node = OmegaConf.select(base, section, default=None)
        if not isinstance(node, DictConfig):
            continue
        chosen = str(choices.get(group))
        needed = {str(key) for key in OmegaConf.missing_keys(node)}
        needed |= {
            key
            for key in PRESET_REQUIRED.get((group, chosen), ())
            if not OmegaConf.is_missing(node, key) and node.get(key) in (None, "")
        }
        for key in sorted(needed):
            value = "???" if OmegaConf.is_missing(node, key) else node.get(key)
            raise _refuse(f"{section}.{key}", value, f"{group}={chosen} needs a value: {section}.{key}=VALUE")


def _check_cluster(base: DictConfig) -> None:
    """A SLURM launcher where there is no SLURM (submitit fails with a traceback once the sweep began)."""
    import shutil

    target = OmegaConf.select(base, "hydra.launcher._target_", default=None)
    if isinstance(target, str) and target.endswith(".SlurmLauncher") and shutil.which("srun") is None:
        choice = OmegaConf.select(base, "hydra.runtime.choices", default=None) or {}
        raise _refuse(
            "hydra/launcher",
            str(choice.get("hydra/launcher", "submitit_slurm")),
            "no SLURM on this machine (srun is not on PATH): run it on the cluster's submit host "
            "(hydra/launcher=submitit_local tries the same path here)",
        )


def check_hydra_node(base: DictConfig, multirun: bool) -> None:
    """Hydra's settings that only fail once Hydra runs: refuse them now, in one line."""
    _check_required(base)
    if multirun:
        _check_cluster(base)
    _build_check("hydra.launcher", base.hydra.get("launcher"), Launcher)
    if multirun:
        _build_check("hydra.sweeper", base.hydra.get("sweeper"), Sweeper)
        batch = OmegaConf.select(base, "hydra.sweeper.max_batch_size", default=None)
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise _refuse("hydra.sweeper.max_batch_size", batch, "expected null or an integer >= 1")
    callbacks = base.hydra.get("callbacks") or {}
    for name in callbacks:
        if callbacks[name] is None:
            raise _refuse(
                f"hydra.callbacks.{name}",
                None,
                "expected a callback (to drop it: ~hydra.callbacks.NAME; aggregation: "
                "hydra.callbacks.aggregate.enabled=false)",
            )
        _build_check(f"hydra.callbacks.{name}", callbacks[name], Callback)
    _check_logging(base)
