from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import pytest

from qbench.settings import Config, validate

ROOT = Path(__file__).resolve().parents[1]


def small_config(tmp_path: Path, **changes: object) -> Config:
    """A validated config small enough for a test: tiny backlog, no ceiling, db in tmp_path."""
    import dataclasses

    cfg = Config()
    base = {
        "tasks": 200,
        "iterations": 1,
        "warmup": 0,
        "history_rows": 100,
        "ceiling": dataclasses.replace(cfg.ceiling, enabled=False),
        "db": dataclasses.replace(cfg.db, dir=str(tmp_path)),
        "iteration_timeout_s": 120.0,
    }
    base.update(changes)
    return validate(dataclasses.replace(cfg, **base))  # type: ignore[arg-type]


def run_qbench(
    args: list[str],
    cwd: Path,
    *,
    module: str = "qbench",
    timeout: float = 300,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m qbench ARGS`` in ``cwd`` the way a user would."""
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["QBENCH_NO_PROGRESS"] = "1"
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class QbenchRunner(Protocol):
    """The signature of :func:`run_qbench`, as the ``qbench_cli`` fixture hands it out."""

    def __call__(
        self,
        args: list[str],
        cwd: Path,
        *,
        module: str = ...,
        timeout: float = ...,
        env_extra: dict[str, str] | None = ...,
    ) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def qbench_cli() -> QbenchRunner:
    return run_qbench


@pytest.fixture(autouse=True, scope="session")
def _private_host_lock(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The suite's jobs take a host lock of their own, so a benchmark (or another suite)
    running on the same machine neither waits for them nor is spoiled by them."""
    os.environ.setdefault("QBENCH_LOCK_DIR", str(tmp_path_factory.mktemp("host-lock")))
