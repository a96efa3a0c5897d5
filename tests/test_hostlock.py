"""The host guard (host_lock=wait|fail|off), launcher presets and missing plugins."""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from qbench.app.explain import explain
from qbench.app.plugins import PLUGIN_EXTRAS, missing_plugin, timeout_min
from qbench.app.preflight import preflight
from qbench.app.schema import register_configs
from qbench.errors import MeasurementError, QbenchError
from qbench.kinds import HostLock
from qbench.report.findings import _health_findings
from qbench.run.hostlock import LOCK_DIR_ENV, Holder, MeasuredWindow, describe, hold_host, lock_path
from qbench.run.job import run_job

from .conftest import ROOT, QbenchRunner, small_config

_HOLDER = """
import sys
from qbench.kinds import HostLock
from qbench.run.hostlock import Holder, MeasuredWindow, hold_host
with hold_host(HostLock.WAIT, Holder(7, sys.argv[1]), MeasuredWindow(), print):
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture(autouse=True)
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lock directory of the test's own; the schema registered, the test in its own directory."""
    where = tmp_path / "locks"
    monkeypatch.setenv(LOCK_DIR_ENV, str(where))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QBENCH_RESUME", raising=False)
    register_configs()
    return where


@contextmanager
def holding(run_dir: str = "/runs/a") -> Iterator[subprocess.Popen[str]]:
    """Another process holding the host lock as job 7 until :func:`release` (or the block's end)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, run_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        release(proc)
        proc.wait(30)


def release(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None and proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.write("\n")
        proc.stdin.close()


def _until(check: Callable[[], object], seconds: float = 30.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


# --- the lock ---------------------------------------------------------------------


def test_the_lock_file_is_in_the_directory_named_by_the_environment(locks: Path) -> None:
    assert lock_path().parent == locks
    assert lock_path().name.startswith("measure-")


def test_a_second_job_waits_for_the_holder_then_gets_the_lock() -> None:
    said: list[str] = []
    window = MeasuredWindow()
    got = threading.Event()

    def second() -> None:
        with hold_host(HostLock.WAIT, Holder(8, "/runs/b"), window, said.append):
            got.set()

    with holding() as proc:
        waiter = threading.Thread(target=second)
        waiter.start()
        assert _until(lambda: said), "the second job never said it waits"
        assert not got.is_set()  # the holder still holds it
        assert "job 7" in said[0] and f"pid {proc.pid}" in said[0] and "/runs/a" in said[0]
        release(proc)
        waiter.join(30)
    assert got.is_set()
    assert window.wait_s is not None and window.wait_s > 0
    assert window.start is not None and window.end is not None and window.start <= window.end
    assert describe(lock_path().read_text()).startswith("job 8 (pid ")  # the file names its last holder


def test_fail_refuses_at_once_naming_the_holder() -> None:
    with (
        holding("/runs/held") as proc,
        pytest.raises(MeasurementError) as info,
        hold_host(HostLock.FAIL, Holder(8, "/runs/b"), MeasuredWindow(), pytest.fail),
    ):
        pytest.fail("entered a held lock")
    message = str(info.value)
    assert "\n" not in message
    assert "job 7" in message and f"pid {proc.pid}" in message and "/runs/held" in message


def test_off_takes_no_lock() -> None:
    window = MeasuredWindow()
    with holding(), hold_host(HostLock.OFF, Holder(8, "/runs/b"), window, pytest.fail):
        pass
    assert window.wait_s is None
    assert window.start is not None and window.end is not None


def test_the_lock_is_released_when_its_holder_is_killed() -> None:
    with holding() as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        window = MeasuredWindow()
        with hold_host(HostLock.FAIL, Holder(8, "/runs/b"), window, pytest.fail):
            pass
    assert window.wait_s == 0.0


# --- a job --------------------------------------------------------------------------


def _rows(path: Path | None) -> list[dict[str, Any]]:
    assert path is not None
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def test_a_job_records_its_measured_window_on_every_row(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    outcome = run_job(small_config(tmp_path, iterations=2), job_dir)
    assert outcome.ok, outcome.reason
    rows = _rows(outcome.metrics_path)
    assert len(rows) == 2
    for row in rows:
        assert row["host_lock"] == "wait" and row["host_lock_wait_s"] == 0.0
        assert row["measured_start_at"] <= row["started_at"] <= row["measured_end_at"]


class _ReleaseOnWait(logging.Handler):
    """Releases the holder once the job says it waits: the wait is certain, its length is not asserted."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__()
        self.proc = proc
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if "waiting for the host lock" in record.getMessage():
            release(self.proc)


def test_a_waiting_job_records_and_logs_its_wait(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    logger = logging.getLogger("qbench.run.job")
    with holding("/runs/first") as proc:
        handler = _ReleaseOnWait(proc)
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            outcome = run_job(small_config(tmp_path), job_dir, job_num=3)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
    assert outcome.ok, outcome.reason
    said = [m for m in handler.messages if "waiting" in m]
    assert said and "job 3: waiting for the host lock held by job 7" in said[0] and "/runs/first" in said[0]
    [row] = _rows(outcome.metrics_path)
    assert row["host_lock_wait_s"] > 0


def test_host_lock_fail_fails_the_job_naming_the_holder_and_measures_nothing(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with holding("/runs/first"):
        outcome = run_job(small_config(tmp_path, host_lock=HostLock.FAIL), job_dir)
    assert not outcome.ok
    assert "job 7" in outcome.reason and "/runs/first" in outcome.reason and "\n" not in outcome.reason
    assert outcome.metrics_path is None and not (job_dir / "metrics.parquet").exists()
    status = json.loads((job_dir / "job_status.json").read_text())
    assert status["status"] == "failed" and "job 7" in status["reason"]


def test_host_lock_off_measures_beside_a_holder_and_is_recorded(tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with holding():
        outcome = run_job(small_config(tmp_path, host_lock=HostLock.OFF), job_dir)
    assert outcome.ok, outcome.reason
    [row] = _rows(outcome.metrics_path)
    assert row["host_lock"] == "off" and row["host_lock_wait_s"] is None
    assert row["measured_start_at"] is not None


def test_the_report_flags_results_measured_with_host_lock_off() -> None:
    summary = pd.DataFrame(
        {
            "host": ["h", "h"],
            "host_lock": ["off", "wait"],
            "workers": [1, 2],
            "tasks_lost_total": [0, 0],
            "tasks_duplicated_total": [0, 0],
        }
    )
    flagged = [line for line in _health_findings(summary, {}) if "host_lock=off" in line]
    assert len(flagged) == 1 and "1 configuration" in flagged[0]
    assert not [line for line in _health_findings(summary.iloc[1:], {}) if "host_lock=off" in line]


# --- bad input: one line -------------------------------------------------------------


def _refusal(args: list[str]) -> str:
    with pytest.raises(QbenchError) as info:
        preflight(args)
    message = str(info.value)
    assert "\n" not in message and message.strip()
    return message


def test_host_lock_bogus_is_one_line() -> None:
    assert _refusal(["host_lock=bogus"]) == "host_lock='bogus' is not allowed: allowed: wait, fail, off"


@pytest.mark.parametrize(
    ("group", "option", "extra"),
    [
        ("hydra/launcher", "joblib", "joblib"),
        ("hydra/launcher", "submitit_slurm", "slurm"),
        ("hydra/launcher", "submitit_local", "slurm"),
        ("hydra/launcher", "ray", "ray"),
        ("hydra/sweeper", "optuna", "optuna"),
    ],
)
def test_a_missing_plugin_names_the_extra_to_install(group: str, option: str, extra: str) -> None:
    line = missing_plugin(group, option)
    assert line == (
        f"{group}={option!r} is not allowed: {PLUGIN_EXTRAS[group, option][1]} is not installed: "
        f"pip install 'qbench[{extra}]'"
    )
    hydra_says = Exception(f"Could not find '{group}/{option}'\n\nAvailable options in '{group}':\n\tbasic")
    assert explain(hydra_says, [f"{group}={option}"]) == line


def test_a_preset_on_a_missing_plugin_names_the_preset_and_the_extra() -> None:
    hydra_says = Exception(
        "In 'hydra/launcher/slurm': Could not find 'hydra/launcher/submitit_slurm'\n\nAvailable options"
    )
    line = explain(hydra_says, ["-m", "hydra/launcher=slurm", "workers=1,2"])
    assert line.startswith("hydra/launcher='slurm' is not allowed: it needs hydra/launcher=submitit_slurm")
    assert line.endswith("pip install 'qbench[slurm]'")


def test_an_unknown_launcher_gets_the_generic_line() -> None:
    line = _refusal(["-m", "workers=1,2", "hydra/launcher=nonexistent_plugin_xyz"])
    assert line.startswith("hydra/launcher='nonexistent_plugin_xyz' is not allowed: allowed: basic")
    assert "pip install" not in line


def test_the_optuna_sweeper_when_not_installed_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through preflight. The test extra installs the plugin, so its config is taken out
    of Hydra's store (and qbench's own registration of it pointed at a module that does not
    exist): the refusal is checked whether or not the plugin is installed."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from qbench.app import plugins

    Plugins.instance()  # the plugins' configs are registered once per process: register them now
    monkeypatch.setattr(plugins, "OPTUNA_CONFIG", "hydra_plugins.qbench_test_no_such_sweeper")
    sweepers = ConfigStore.instance().repo["hydra"]["sweeper"]
    if "optuna.yaml" in sweepers:
        monkeypatch.delitem(sweepers, "optuna.yaml")
    line = _refusal(["-m", "workers=1,2", "hydra/sweeper=optuna"])
    assert line.endswith("pip install 'qbench[optuna]'")


def test_unknown_launcher_options_are_one_line() -> None:
    assert _refusal(["-m", "workers=1,2", "hydra.launcher.bogus=1"]).startswith(
        "hydra.launcher.bogus='1' is not allowed: unknown key"
    )


_joblib = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="hydra-joblib-launcher is not installed (pip install 'qbench[joblib]')",
)
_submitit = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (pip install 'qbench[slurm]')",
)


@_joblib
def test_a_key_a_plugin_launcher_does_not_take_is_one_line() -> None:
    line = _refusal(["-m", "workers=1,2", "hydra/launcher=local_parallel", "+hydra.launcher.bogus=1"])
    assert line.startswith("hydra.launcher.bogus=1 is not allowed: JoblibLauncher takes: n_jobs")


@_submitit
def test_the_slurm_preset_without_a_partition_is_one_line_naming_it() -> None:
    line = _refusal(["-m", "workers=1,2", "hydra/launcher=slurm"])
    assert line == (
        "hydra.launcher.partition=None is not allowed: "
        "hydra/launcher=slurm needs a value: hydra.launcher.partition=VALUE"
    )


@_submitit
@pytest.mark.skipif(bool(__import__("shutil").which("srun")), reason="SLURM is installed here")
def test_the_slurm_preset_where_there_is_no_slurm_is_one_line() -> None:
    line = _refusal(["-m", "workers=1,2", "hydra/launcher=slurm", "hydra.launcher.partition=debug"])
    assert line.startswith("hydra/launcher='slurm' is not allowed: no SLURM on this machine")


def test_the_slurm_time_limit_follows_the_jobs_size() -> None:
    # each run (warmup, measured, the ceiling) at most iteration_timeout_s, plus 10 minutes of set-up
    assert timeout_min(10, 2, 600.0, True) == 13 * 10 + 10
    assert timeout_min(5, 0, 60.0, False) == 5 + 10
    assert timeout_min(None, None, None, None) == timeout_min(10, 2, 600.0, True)  # the defaults


# --- sweeps under parallel launchers ---------------------------------------------------


def _windows(sweep: Path) -> list[tuple[datetime, datetime]]:
    windows = []
    for path in sorted(sweep.glob("*/metrics.parquet")):
        rows = _rows(path)
        [start] = {r["measured_start_at"] for r in rows}
        [end] = {r["measured_end_at"] for r in rows}
        assert all(start <= r["started_at"] <= end for r in rows)
        assert all(r["host_lock_wait_s"] is not None for r in rows)
        windows.append((start, end))
    return sorted(windows)


def _assert_apart(windows: list[tuple[datetime, datetime]]) -> None:
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end <= start, f"two measured windows overlap: {windows}"


_SMALL = [
    "tasks=200",
    "iterations=2",
    "warmup=0",
    "ceiling.enabled=false",
    "history_rows=100",
    "synchronous=off",  # journal=delete syncs each commit otherwise: seconds per iteration on a slow disk
    "hydra.callbacks.aggregate.enabled=false",
]


@pytest.mark.slow
@_joblib
def test_a_parallel_sweep_never_measures_two_jobs_at_once(
    tmp_path: Path, locks: Path, qbench_cli: QbenchRunner
) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=local_parallel", "workers=1,2", "journal=wal,delete", *_SMALL]
    proc = qbench_cli([*args, f"hydra.sweep.dir={sweep}"], tmp_path, env_extra={LOCK_DIR_ENV: str(locks)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    windows = _windows(sweep)
    assert len(windows) == 4
    _assert_apart(windows)


@pytest.mark.slow
@_submitit
def test_a_job_through_submitit_local_runs_and_is_guarded(
    tmp_path: Path, locks: Path, qbench_cli: QbenchRunner
) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=submitit_local", *_SMALL, f"hydra.sweep.dir={sweep}"]
    proc = qbench_cli(args, tmp_path, env_extra={LOCK_DIR_ENV: str(locks)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_windows(sweep)) == 1
    assert json.loads((sweep / "0" / "job_status.json").read_text())["status"] == "ok"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
    reason="hydra-ray-launcher is not installed (pip install 'qbench[ray]')",
)
def test_a_sweep_on_a_local_ray_cluster_never_measures_two_jobs_at_once(
    tmp_path: Path, locks: Path, qbench_cli: QbenchRunner
) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "workers=1,2", *_SMALL]
    proc = qbench_cli(
        [*args, f"hydra.sweep.dir={sweep}"], tmp_path, env_extra={LOCK_DIR_ENV: str(locks)}, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    windows = _windows(sweep)
    assert len(windows) == 2
    _assert_apart(windows)
