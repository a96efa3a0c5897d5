"""Where qbench's Hydra config tree lives."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    """``conf/`` inside the installed package (a wheel), else beside the package (a checkout)."""
    for candidate in (_PACKAGE / "conf", _PACKAGE.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"qbench's config tree (conf/config.yaml) was not found in {_PACKAGE / 'conf'} "
        f"or {_PACKAGE.parent / 'conf'}; reinstall qbench"
    )
