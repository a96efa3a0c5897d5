"""Hydra plugins qbench knows: which extra installs each, and the resolver its presets use.

A launcher or sweeper that is not installed is no option Hydra knows, so
Hydra says only that it "could not find" it. :func:`missing_plugin` names the
extra that installs it instead (``pip install 'qbench[joblib]'``), for the
plugin itself and for qbench's presets built on it (``conf/hydra/launcher/``).
"""

from __future__ import annotations

import math

from omegaconf import OmegaConf

from qbench.errors import ConfigError

# (config group, option) -> (qbench's extra, the distribution it installs)
PLUGIN_EXTRAS: dict[tuple[str, str], tuple[str, str]] = {
    ("hydra/launcher", "joblib"): ("joblib", "hydra-joblib-launcher"),
    ("hydra/launcher", "submitit_local"): ("slurm", "hydra-submitit-launcher"),
    ("hydra/launcher", "submitit_slurm"): ("slurm", "hydra-submitit-launcher"),
    ("hydra/launcher", "ray"): ("ray", "hydra-ray-launcher"),
    ("hydra/launcher", "ray_aws"): ("ray", "hydra-ray-launcher"),
    ("hydra/sweeper", "optuna"): ("optuna", "hydra-optuna-sweeper"),
}

# Keys qbench's presets need a value for: (group, preset) -> keys under hydra.launcher / hydra.sweeper.
# (``???`` in a preset cannot say so: merged over a plugin's null, a missing value keeps the null.)
PRESET_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("hydra/launcher", "slurm"): ("partition",),
}

# Set-up of a job (database, history rows, machine facts), on top of its iterations: seconds.
SETUP_ALLOWANCE_S = 600.0
TIMEOUT_RESOLVER = "qbench.timeout_min"


def missing_plugin(group: str, option: str, chosen: str | None = None) -> str | None:
    """One line for ``group=chosen`` when it needs plugin ``option``, which is not installed.

    ``chosen`` is the option the user named (a preset built on ``option``, or
    ``option`` itself); None when ``option`` is no plugin qbench knows.
    """
    known = PLUGIN_EXTRAS.get((group, option))
    if known is None:
        return None
    extra, distribution = known
    named = chosen or option
    needs = "" if named == option else f"it needs {group}={option}, and "
    return str(
        ConfigError(group, named, f"{needs}{distribution} is not installed: pip install 'qbench[{extra}]'")
    )


def timeout_min(iterations: object, warmup: object, iteration_timeout_s: object, ceiling: object) -> int:
    """A job's time limit in minutes: each iteration (and the ceiling) at most ``iteration_timeout_s``.

    Plus :data:`SETUP_ALLOWANCE_S` for the job's set-up; for the SLURM preset's ``timeout_min``.
    A value that cannot be reached (None: ``--cfg hydra`` shows the hydra node alone) is the default's.
    """
    from qbench.settings import Config

    default = Config()

    def given(value: object, fallback: object) -> str:
        return str(fallback if value is None else value)

    runs = int(given(iterations, default.iterations)) + int(given(warmup, default.warmup))
    runs += 1 if given(ceiling, default.ceiling.enabled).lower() == "true" else 0
    seconds = runs * float(given(iteration_timeout_s, default.iteration_timeout_s)) + SETUP_ALLOWANCE_S
    return max(1, math.ceil(seconds / 60.0))


def register_resolvers() -> None:
    """The resolvers qbench's presets use (registered at import: a launcher's worker imports this too)."""
    if not OmegaConf.has_resolver(TIMEOUT_RESOLVER):
        OmegaConf.register_new_resolver(TIMEOUT_RESOLVER, timeout_min)


register_resolvers()


OPTUNA_CONFIG = "hydra_plugins.hydra_optuna_sweeper.config"


def register_sweeper_defaults() -> None:
    """``hydra/sweeper=optuna`` maximises qbench's objective (the plugin's own default minimises).

    Hydra's plugin scan stores each plugin's configs (running their modules again), so the scan
    happens first; the optuna sweeper's node is then stored again with ``direction: maximize``.
    Nothing happens when the plugin is not installed.
    """
    import dataclasses
    import importlib
    from typing import Any

    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()
    try:
        config = importlib.import_module(OPTUNA_CONFIG)
    except ImportError:
        return
    node = dataclasses.make_dataclass(
        "QbenchOptunaSweeperConf",
        [("direction", Any, dataclasses.field(default=config.Direction.maximize))],
        bases=(config.OptunaSweeperConf,),
    )
    ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=node, provider="optuna_sweeper")
