"""qbench: measure how to configure a job queue that lives in SQLite."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qbench")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0.0.0+checkout"

__all__ = ["__version__"]
