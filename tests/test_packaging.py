"""A wheel (non-editable install) carries conf/ and runs from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

# every test here builds (and one installs) a wheel
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [whl] = out.glob("qbench-*.whl")
    return whl


def test_wheel_carries_the_config_tree_and_queries(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "qbench/conf/config.yaml",
        "qbench/conf/journal/wal.yaml",
        "qbench/conf/pool/per_worker.yaml",
        "qbench/run/queues/queries.sql",
        "qbench/run/queues/schema.sql",
        "qbench/__main__.py",
    ):
        assert needed in names


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    env["QBENCH_NO_PROGRESS"] = "1"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "qbench",
            "tasks=20",
            "iterations=1",
            "warmup=0",
            "history_rows=0",
            "hydra.run.dir=out",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (work / "out" / "metrics.parquet").exists()
    where = subprocess.run(
        [sys.executable, "-c", "import qbench.app.paths as p; print(p.conf_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(site / "qbench" / "conf")
