"""A composed job's identity: its directory, its label and its config as results store it.

Shared by preflight (before anything runs), the launcher (to keep a finished
job when resuming) and the job itself, so the three cannot disagree.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from qbench.app.explain import one_line
from qbench.app.redact import Redaction, config_yaml
from qbench.errors import ConfigError

_DIR_DEFAULTS = {
    "hydra.run.dir": "outputs/runs/${now:%Y-%m-%d}/${now:%H-%M-%S}",
    "hydra.sweep.dir": "outputs/multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}",
    "hydra.sweep.subdir": "${hydra.job.num}",
}


def _directory(cfg: DictConfig, key: str) -> str:
    """The resolved value of a directory key; refused when empty or unresolvable."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent)
    container = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else None
    raw = container.get(leaf) if isinstance(container, dict) else None
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except Exception as exc:
        reason = one_line(str(exc))
        if "${oc.env:" in str(OmegaConf.to_container(cfg.hydra, resolve=False)):
            reason = "cannot be resolved (is every environment variable it names set?)"
        raise ConfigError(key, raw, reason) from None
    if value is None or not str(value).strip():
        raise ConfigError(
            key, "" if value is None else value, f"expected a directory (default {_DIR_DEFAULTS[key]})"
        )
    return str(value)


def job_dir(cfg: DictConfig, *, multirun: bool) -> Path:
    """The absolute directory Hydra gives this job (``hydra.run.dir``, or ``hydra.sweep.dir/subdir``).

    Raises:
        ConfigError: a directory key that is empty or cannot be resolved.
    """
    if not multirun:
        return Path(os.path.abspath(_directory(cfg, "hydra.run.dir")))
    sweep = _directory(cfg, "hydra.sweep.dir")
    return Path(os.path.abspath(os.path.join(sweep, _directory(cfg, "hydra.sweep.subdir"))))


def sweep_dir(cfg: DictConfig) -> Path:
    return Path(os.path.abspath(_directory(cfg, "hydra.sweep.dir")))


@contextmanager
def hydra_config(cfg: DictConfig, output_dir: Path) -> Iterator[None]:
    """Make ``${hydra:...}`` resolvable for ``cfg`` as it is while the job runs; restored after."""
    instance = HydraConfig.instance()
    previous = instance.cfg
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(output_dir)
    instance.set_config(cfg)
    try:
        yield
    finally:
        instance.cfg = previous


def task_config(cfg: DictConfig) -> DictConfig:
    """The job's own config, as the task function receives it (no ``hydra`` node)."""
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return task


def stored_yaml(task: DictConfig, redaction: Redaction) -> str:
    """The config as ``metrics.parquet`` stores it: resolved, values from the environment replaced."""
    return config_yaml(task, list(redaction.paths))


def job_label(hydra_node: DictConfig) -> str:
    """The job's overrides as typed (``hydra.job.override_dirname`` without resolving them).

    Hydra's override_dirname is itself an interpolation of the overrides, so reading it
    resolves ``${oc.env:...}``: the label is built from the unresolved override lines.
    """
    lines = OmegaConf.to_container(hydra_node.overrides.task, resolve=False)
    exclude = OmegaConf.select(hydra_node, "job.config.override_dirname.exclude_keys", default=None) or []
    kept = sorted(
        str(line) for line in (lines or []) if str(line).partition("=")[0].lstrip("+~") not in set(exclude)
    )
    return ",".join(kept) or "defaults"
