"""Values from the environment: found, and kept out of results, logs, headlines and messages.

A value is *from the environment* when it is ``${oc.env:...}`` or an
interpolation that reaches one (``ceiling.tasks: ${tasks}`` when ``tasks``
comes from the environment). They are found by resolving a copy of the
config in which every ``oc.env`` call returns a marker: whatever resolves to
something holding the marker came from the environment, however indirectly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from qbench.errors import ConfigError

REDACTED = "<from environment>"

_MARK = "\x1fqbench-from-environment\x1f"
_RESOLVER = "qbench_env_mark"
_ENV_CALL = re.compile(r"\$\{\s*oc\.env\s*:")
_ENV_NAME = re.compile(r"\$\{\s*oc\.env\s*:\s*([^,}\s]+)")
_REFERENCE = re.compile(r"\$\{\s*\.*([\w.\-/]+)\s*\}")
# the keys that decide a job's directory, by run mode
RUN_DIR_KEYS = (("hydra", "run", "dir"),)
SWEEP_DIR_KEYS = (("hydra", "sweep", "dir"), ("hydra", "sweep", "subdir"))

Path_ = tuple[str | int, ...]


def _marked(node: Any) -> Any:
    """``node`` with every ``oc.env`` call replaced by the marking resolver."""
    if isinstance(node, dict):
        return {key: _marked(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_marked(value) for value in node]
    if isinstance(node, str) and "${" in node:
        return _ENV_CALL.sub("${" + _RESOLVER + ":", node)
    return node


def _leaves(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path, node


def _get(cfg: Any, path: Path_) -> Any:
    node = cfg
    for key in path:
        node = node[key]
    return node


def env_derived(raw: dict[str, Any]) -> list[Path_]:
    """Paths of the values in ``raw`` (an unresolved container) that come from the environment."""
    candidates = [(p, v) for p, v in _leaves(raw) if isinstance(v, str) and "${" in v]
    if not any(_ENV_CALL.search(value) for _, value in candidates):
        return []
    OmegaConf.register_new_resolver(_RESOLVER, lambda *_: _MARK, replace=True)
    marked = OmegaConf.create(_marked(raw))
    paths: list[Path_] = []
    for path, _ in candidates:
        try:
            value = _get(marked, path)
        except Exception:  # a value that cannot resolve is not shown either
            paths.append(path)
            continue
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=False)
        if _MARK in str(value):
            paths.append(path)
    return paths


@dataclass(frozen=True)
class Redaction:
    """What of one job must not be shown: its values from the environment, maybe its directory."""

    # paths in the job config (no ``hydra`` node) whose values come from the environment
    paths: tuple[Path_, ...] = ()
    # the job's directory (hydra.run.dir, or hydra.sweep.dir/subdir) comes from the environment
    job_dir: bool = False
    # the resolved values that must not appear in any message (strings of 4+ characters)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def keys(self) -> set[str]:
        """Dotted keys (``db.dir``) of the redacted values."""
        return {".".join(str(k) for k in path) for path in self.paths}

    def columns(self) -> dict[str, str]:
        """Config columns for ``run_job(redacted=...)``; ``db_dir`` too when the job dir is from the env."""
        columns = {"_".join(str(k) for k in path): REDACTED for path in self.paths}
        if self.job_dir:
            columns.setdefault("db_dir", REDACTED)
        return columns

    def text(self, message: str) -> str:
        """``message`` with every value from the environment replaced."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            message = message.replace(secret, REDACTED)
        return message

    def error(self, exc: ConfigError) -> str:
        """The one-line message of ``exc``, its value hidden when it comes from the environment."""
        if exc.key in self.keys:
            return self.text(f"{exc.key}={REDACTED} is not allowed: {exc.allowed}")
        return self.text(str(exc))


def redaction(
    raw: dict[str, Any], values: DictConfig, *, multirun: bool, job_dir: str | None = None
) -> Redaction:
    """What of a job must not be shown.

    Args:
        raw: the job's config unresolved, ``hydra`` node included (``OmegaConf.to_container``).
        values: the job's config, to read the redacted values from.
        multirun: whether the job's directory is hydra.sweep.dir/subdir (else hydra.run.dir).
        job_dir: the job's directory, hidden too when it comes from the environment.
    """
    paths = env_derived(raw)
    dir_keys = SWEEP_DIR_KEYS if multirun else RUN_DIR_KEYS
    job_paths = tuple(p for p in paths if p[:1] != ("hydra",))
    dir_from_env = any(k in paths for k in dir_keys)
    secrets: list[str] = [job_dir] if dir_from_env and job_dir else []
    for path in job_paths:
        try:
            value = _get(values, path)
        except Exception:
            continue
        if isinstance(value, str) and len(value.strip()) >= 4:
            secrets.append(value)
    return Redaction(job_paths, dir_from_env, tuple(secrets))


def redaction_of(cfg: DictConfig, *, multirun: bool, job_dir: str | None = None) -> Redaction:
    """:func:`redaction` of a composed config that holds its ``hydra`` node."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(raw, dict)
    return redaction({str(k): v for k, v in raw.items()}, cfg, multirun=multirun, job_dir=job_dir)


def config_yaml(dcfg: DictConfig, redact: tuple[Path_, ...] | list[Path_]) -> str:
    """The resolved job config as YAML, with the values at ``redact`` replaced."""
    resolved = OmegaConf.to_container(dcfg, resolve=True)
    for path in redact:
        node: Any = resolved
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = REDACTED
    return OmegaConf.to_yaml(OmegaConf.create(resolved))


def overrides_from_env(overrides: Sequence[str]) -> tuple[set[str], set[str]]:
    """What a command line sets from the environment: keys and group choices (``hydra.*`` too), and values.

    Decided from the raw override strings, so it holds before anything composes: an override is
    from the environment when its value calls ``oc.env`` or interpolates a key that is.
    """
    pairs = []
    for text in overrides:
        key, sep, value = str(text).partition("=")
        if sep:
            pairs.append((key.lstrip("+~").partition("@")[0], value))
    keys: set[str] = set()
    values: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key, value in pairs:
            names = _ENV_NAME.findall(value)
            if key not in keys and (names or set(_REFERENCE.findall(value)) & keys):
                keys.add(key)
                changed = True
            values.update(found for name in names if (found := os.environ.get(name)) is not None)
    return keys, values


def hidden_message(message: str, overrides: Sequence[str]) -> str:
    """A refusal with every value the command line takes from the environment replaced."""
    keys, values = overrides_from_env(overrides)
    for key in sorted(keys, key=len, reverse=True):
        pattern = rf"(?<![\w.]){re.escape(key)}=.*? is not allowed"
        message = re.sub(pattern, f"{key}={REDACTED} is not allowed", message)
    for value in sorted(values, key=len, reverse=True):
        if len(value.strip()) >= 4:
            message = message.replace(value, REDACTED)
    return message
