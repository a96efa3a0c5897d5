"""Hardening of the measurement side: livelocks, deadlines, Ctrl-C, kill -9, full disks."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psutil
import pyarrow.parquet as pq
import pytest

from qbench.errors import DrainTimeoutError, LivelockError, ResultsError
from qbench.results.readers import read_metadata
from qbench.run import job as job_module
from qbench.run import outcome as outcome_module
from qbench.run.database import prepare_database
from qbench.run.executors import async_executor, drain_spec, run_drain
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProgressSink
from qbench.run.job import run_job
from qbench.run.leftovers import claim_database, release_database, remove_leftovers
from qbench.run.metrics import DrainStats, ResourceMonitor
from qbench.run.pragmas import connection_settings
from qbench.run.queues import QueueUnderTest, make_queue
from qbench.settings import Config, validate

from .conftest import ROOT, small_config

# The livelock: deferred claims, the native busy policy with no busy timeout and
# a rollback journal. On 2-core machines 200 workers ack nothing for seconds at a time.
# (Since a worker runs a whole transaction in one call on its connection's thread, its
# window between SELECT and UPDATE is microseconds: 50 workers now trickle through at a
# few tasks/s, a near-livelock the watchdog rightly leaves alone; 200 still livelock.)
LIVELOCK = {
    "workers": 200,
    "tasks": 300,
    "journal": {"mode": "delete"},
    "synchronous": "full",
    "busy": {"policy": "native", "timeout_ms": 0},
    "claim": {"tx": "deferred"},
}


def config_from(db_dir: Path, spec: dict[str, Any]) -> Config:
    """``small_config`` with ``spec`` applied; nested mappings replace fields of their section."""
    cfg = small_config(db_dir)
    changes = {
        key: dataclasses.replace(getattr(cfg, key), **value) if isinstance(value, dict) else value
        for key, value in spec.items()
    }
    return validate(dataclasses.replace(cfg, **changes))


def status_of(job_dir: Path) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((job_dir / "job_status.json").read_text()))


def db_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("qbench-*.db*"))


# ---------------------------------------------------------------- livelock watchdog


class _FakeDrain:
    """What the watchdog reads of a drain: the busy counter and the first acks."""

    def __init__(self, tasks: int, watchdog_s: float) -> None:
        self.stats = DrainStats.for_tasks(tasks)
        self.acked_unique = 0
        self.spec = SimpleNamespace(tasks=tasks, watchdog_s=watchdog_s)


def _watch(window_s: float, drive: Callable[[_FakeDrain], Any], limit_s: float) -> LivelockError | None:
    """Run the watchdog beside ``drive(drain)`` for at most ``limit_s``; what it found, if anything."""

    async def main() -> LivelockError | None:
        drain = _FakeDrain(100, window_s)
        driver = asyncio.create_task(drive(drain))
        try:
            return await asyncio.wait_for(async_executor._watchdog(cast(Any, drain), window_s), limit_s)
        except TimeoutError:
            return None
        finally:
            driver.cancel()

    return asyncio.run(main())


async def _busy_storm(drain: _FakeDrain) -> None:
    while True:
        drain.stats.busy_by_phase["claim"] += 25
        await asyncio.sleep(0.01)


async def _slow_service(drain: _FakeDrain) -> None:
    """One worker, 2 s per task, never a busy error: slow, not stuck."""
    while True:
        await asyncio.sleep(2.0)
        drain.acked_unique += 1


async def _storm_with_progress(drain: _FakeDrain) -> None:
    """Heavy contention, but a task gets through every 0.3 s."""
    storm = asyncio.create_task(_busy_storm(drain))
    try:
        while True:
            await asyncio.sleep(0.3)
            drain.acked_unique += 1
    finally:
        storm.cancel()


def test_watchdog_fires_on_busy_errors_without_acks() -> None:
    started = time.perf_counter()
    found = _watch(0.4, _busy_storm, limit_s=5.0)
    assert found is not None
    assert time.perf_counter() - started < 1.5
    assert str(found).startswith("livelock: 0 acks in 0.")
    assert "busy retries" in str(found) and "0 of 100 tasks acknowledged" in str(found)
    assert found.busy > 0 and found.window_s >= 0.4 and found.acked == 0


@pytest.mark.parametrize("drive", [_slow_service, _storm_with_progress], ids=["slow-service", "progress"])
def test_watchdog_leaves_slow_or_progressing_drains_alone(drive: Callable[[_FakeDrain], Any]) -> None:
    assert _watch(0.4, drive, limit_s=0.9) is None


def test_watchdog_zero_is_allowed_and_negative_is_refused(tmp_path: Path) -> None:
    from qbench.errors import ConfigError

    assert small_config(tmp_path, watchdog_s=0).watchdog_s == 0.0
    with pytest.raises(ConfigError, match=r"watchdog_s=-1"):
        small_config(tmp_path, watchdog_s=-1)


@pytest.mark.slow
def test_livelock_fails_the_job_early_as_a_finding(tmp_path: Path) -> None:
    cfg = config_from(tmp_path, {**LIVELOCK, "watchdog_s": 1.0, "iteration_timeout_s": 120.0})
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    started = time.perf_counter()
    outcome = run_job(cfg, job_dir)
    elapsed = time.perf_counter() - started
    assert not outcome.ok
    assert elapsed < 15, f"the watchdog took {elapsed:.1f} s, the iteration timeout is 120 s"
    assert outcome.reason.startswith("LivelockError: livelock: 0 acks in ")
    assert "busy retries" in outcome.reason
    status = status_of(job_dir)
    assert status["status"] == "failed" and status["reason"] == outcome.reason
    assert db_files(tmp_path) == [], "the database of a livelocked job is removed"


def test_a_livelock_after_good_iterations_keeps_their_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    livelock = LivelockError(
        "livelock: 0 acks in 10.0 s, 48,000 busy retries", acked=0, tasks=20, window_s=10.0, busy=48_000
    )
    calls = 0

    def executor(spec: DrainSpec, queue: QueueUnderTest, **kwargs: Any) -> DrainResult:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise livelock
        return run_drain(spec, queue, **kwargs)

    monkeypatch.setattr(job_module, "executor_for", lambda cfg: executor)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    outcome = run_job(small_config(tmp_path, tasks=20, warmup=1, iterations=2), job_dir)
    assert not outcome.ok and outcome.reason == f"LivelockError: {livelock}"
    assert (
        status_of(job_dir)["reason"] == outcome.reason and status_of(job_dir)["metrics"] == "metrics.parquet"
    )
    assert pq.read_table(job_dir / "metrics.parquet").num_rows == 1
    meta_status = json.loads(read_metadata(job_dir / "metrics.parquet")["qbench.status"])
    assert meta_status == {"status": "failed", "reason": outcome.reason}


@pytest.mark.slow
def test_a_slow_config_is_not_a_livelock(tmp_path: Path) -> None:
    cfg = config_from(
        tmp_path, {"workers": 1, "tasks": 1, "watchdog_s": 1.0, "service": {"kind": "sleep", "ms": 2000.0}}
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    outcome = run_job(cfg, job_dir)
    assert outcome.ok, outcome.reason


# ---------------------------------------------------------------- iteration deadline, every service kind


@pytest.mark.slow
@pytest.mark.parametrize(
    ("service", "tasks", "workers"),
    [
        ({"kind": "noop"}, 50_000, 1),
        ({"kind": "sleep", "ms": 10_000.0}, 10, 3),
        ({"kind": "cpu", "ms": 10_000.0}, 10, 3),
    ],
    ids=["noop-huge-backlog", "sleep", "cpu"],
)
def test_every_service_kind_honours_the_iteration_timeout(
    tmp_path: Path, service: dict[str, Any], tasks: int, workers: int
) -> None:
    timeout_s = 1.0
    cfg = config_from(
        tmp_path, {"tasks": tasks, "workers": workers, "service": service, "iteration_timeout_s": timeout_s}
    )
    queue, settings, db_path = make_queue(cfg), connection_settings(cfg), tmp_path / "q.db"
    backlog = prepare_database(
        db_path, queue, settings, history_rows=0, tasks=tasks, payload=b"p", enqueue_batch=5000
    )
    started = time.perf_counter()
    with pytest.raises(DrainTimeoutError, match="iteration_timeout_s=1"):
        run_drain(drain_spec(cfg, db_path, backlog.first_id), queue)
    elapsed = time.perf_counter() - started
    assert timeout_s <= elapsed < timeout_s + 1.0, f"the timeout fired after {elapsed:.2f} s"


# ---------------------------------------------------------------- Ctrl-C


def _interrupt_on_call(n: int) -> Callable[..., DrainResult]:
    """An executor that drains normally, then raises KeyboardInterrupt on its ``n``-th call."""
    calls = 0

    def executor(
        spec: DrainSpec,
        queue: QueueUnderTest,
        *,
        on_progress: ProgressSink | None = None,
        monitor: ResourceMonitor | None = None,
    ) -> DrainResult:
        nonlocal calls
        calls += 1
        if calls == n:
            raise KeyboardInterrupt
        return run_drain(spec, queue, on_progress=on_progress, monitor=monitor)

    return executor


def test_ctrl_c_records_interrupted_keeps_rows_and_removes_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_module, "executor_for", lambda cfg: _interrupt_on_call(2))
    cfg = small_config(tmp_path, tasks=20, iterations=3)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_job(cfg, job_dir, job_num=4)
    status = status_of(job_dir)
    assert status["status"] == "interrupted"
    assert status["reason"] == "interrupted (SIGINT)"
    assert status["job_num"] == 4 and status["run_id"]
    assert status["metrics"] == "metrics.parquet"
    assert pq.read_table(job_dir / "metrics.parquet").num_rows == 1
    meta_status = json.loads(read_metadata(job_dir / "metrics.parquet")["qbench.status"])
    assert meta_status == {"status": "interrupted", "reason": "interrupted (SIGINT)"}
    assert db_files(tmp_path) == []


def test_an_interrupt_before_any_row_writes_the_status_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_module, "executor_for", lambda cfg: _interrupt_on_call(1))
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        run_job(small_config(tmp_path, tasks=20), job_dir)
    assert status_of(job_dir)["status"] == "interrupted"
    assert status_of(job_dir)["metrics"] is None
    assert not (job_dir / "metrics.parquet").exists()
    assert db_files(tmp_path) == []


_CHILD = """
import json, sys
from pathlib import Path
from tests.test_hardening_run import config_from
from qbench.run.job import run_job
cfg = config_from(Path(sys.argv[1]), json.loads(sys.argv[2]))
try:
    run_job(cfg, Path(sys.argv[3]))
except KeyboardInterrupt:
    print("KeyboardInterrupt re-raised", flush=True)
    sys.exit(130)
"""


@pytest.fixture
def child_job(tmp_path: Path) -> Iterator[Callable[[Path, Path, dict[str, Any]], subprocess.Popen[str]]]:
    """Start a job in a child process; the child is killed if the test leaves it running."""
    children: list[subprocess.Popen[str]] = []

    def start(db_dir: Path, job_dir: Path, spec: dict[str, Any]) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "QBENCH_NO_PROGRESS": "1"}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db_dir), json.dumps(spec), str(job_dir)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
            child.communicate()


def _wait_for_drain(db_dir: Path, child: subprocess.Popen[str], settle_s: float = 1.0) -> None:
    """Until the child's database exists (set-up is milliseconds), then ``settle_s`` into the drain."""
    deadline = time.monotonic() + 30
    while not list(db_dir.glob("qbench-*.db")):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never created its database"
        time.sleep(0.05)
    time.sleep(settle_s)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "presses"),
    [
        ({"workers": 2, "tasks": 10, "service": {"kind": "sleep", "ms": 60_000.0}}, 1),
        # busy work holds the event loop: it must notice the interrupt itself
        ({"workers": 2, "tasks": 10, "service": {"kind": "cpu", "ms": 60_000.0}}, 1),
        # an impatient user: the second Ctrl-C lands in the middle of the clean-up
        ({"workers": 50, "tasks": 100_000}, 2),
    ],
    ids=["sleep", "cpu", "twice-50-workers"],
)
def test_sigint_mid_drain_ends_cleanly(
    tmp_path: Path, child_job: Callable[..., subprocess.Popen[str]], spec: dict[str, Any], presses: int
) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    child = child_job(tmp_path, job_dir, spec)
    _wait_for_drain(tmp_path, child)
    for _ in range(presses):
        child.send_signal(signal.SIGINT)
        time.sleep(0.01)
    sent = time.monotonic()
    out, err = child.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "threads or busy work kept the process alive"
    assert child.returncode == 130, err
    assert "KeyboardInterrupt re-raised" in out
    for noise in ("Traceback", "Exception in thread", "never retrieved", "Task was destroyed"):
        assert noise not in err, err
    assert status_of(job_dir)["status"] == "interrupted"
    assert status_of(job_dir)["reason"] == "interrupted (SIGINT)"
    assert db_files(tmp_path) == []


# ---------------------------------------------------------------- kill -9 leftovers


@pytest.mark.slow
@pytest.mark.parametrize("where", ["job_dir", "shared_db_dir"])
def test_kill_9_leftovers_are_removed_by_the_next_job(
    tmp_path: Path, child_job: Callable[..., subprocess.Popen[str]], where: str
) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    db_dir = job_dir if where == "job_dir" else tmp_path / "shared"
    db_dir.mkdir(exist_ok=True)
    # a rollback journal with fsyncs: the drain is slow and its journal is hot half the time
    spec = {"tasks": 50_000, "journal": {"mode": "delete"}, "synchronous": "full"}
    child = child_job(db_dir, job_dir, spec)
    _wait_for_drain(db_dir, child, settle_s=0.5)
    child.kill()
    child.communicate()
    left = db_files(db_dir)
    assert any(name.endswith(".db") for name in left) and any(name.endswith(".owner") for name in left)
    # the next job: a re-run into the same job directory, or another job sharing db.dir
    next_dir = job_dir if where == "job_dir" else tmp_path / "next"
    next_dir.mkdir(exist_ok=True)
    outcome = run_job(small_config(db_dir, tasks=20), next_dir)
    assert outcome.ok, outcome.reason
    assert db_files(db_dir) == [], "the killed job's database, journal and owner file are gone"


def _dead_pid() -> tuple[int, float]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    created = psutil.Process(child.pid).create_time()
    child.wait()
    return child.pid, created


def _leftover(directory: Path, name: str, owner: dict[str, Any] | None) -> Path:
    db = directory / name
    db.write_bytes(b"SQLite format 3\x00")
    Path(f"{db}-journal").write_bytes(b"hot")
    if owner is not None:
        Path(f"{db}.owner").write_text(json.dumps(owner))
    return db


def test_a_shared_db_dir_loses_only_the_databases_of_dead_owners(tmp_path: Path) -> None:
    import socket

    host = socket.gethostname()
    pid, created = _dead_pid()
    me = psutil.Process()
    dead = _leftover(tmp_path, "qbench-00000000000a.db", {"host": host, "pid": pid, "create_time": created})
    alive = _leftover(
        tmp_path, "qbench-00000000000b.db", {"host": host, "pid": me.pid, "create_time": me.create_time()}
    )
    # the pid of a live process, but not the process that wrote the owner file
    reused = _leftover(tmp_path, "qbench-00000000000c.db", {"host": host, "pid": me.pid, "create_time": 1.0})
    unknown = _leftover(tmp_path, "qbench-00000000000d.db", None)
    elsewhere = _leftover(
        tmp_path, "qbench-00000000000e.db", {"host": "x-other", "pid": 1, "create_time": 1.0}
    )
    kept = _leftover(
        tmp_path, "qbench-00000000000f.db", {"host": host, "pid": pid, "create_time": created, "kept": True}
    )
    found = remove_leftovers(tmp_path, own=False)
    assert found.removed == [dead, reused]
    assert found.in_use == [alive]
    assert found.kept == [(unknown, "no owner recorded"), (elsewhere, "owner on host x-other")]
    assert not dead.exists() and not Path(f"{dead}-journal").exists() and not Path(f"{dead}.owner").exists()
    assert alive.exists() and unknown.exists() and elsewhere.exists() and kept.exists()
    # in the job's own directory, a database with no owner file can only be this job's leftover
    assert remove_leftovers(tmp_path, own=True).removed == [unknown]
    assert kept.exists() and alive.exists()


def test_owner_file_lives_and_dies_with_the_database(tmp_path: Path) -> None:
    db = tmp_path / "qbench-0123456789ab.db"
    claim_database(db)
    db.write_bytes(b"x")
    assert remove_leftovers(tmp_path, own=False).in_use == [db], "its owner (this process) is alive"
    release_database(db, keep=False)
    assert db_files(tmp_path) == []
    claim_database(db)
    db.write_bytes(b"x")
    release_database(db, keep=True)
    assert json.loads(Path(f"{db}.owner").read_text())["kept"] is True
    assert remove_leftovers(tmp_path, own=True).removed == [], "a kept database is never a leftover"
    assert db.exists()


# ---------------------------------------------------------------- full disk


def _enospc(*args: object, **kwargs: object) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_metrics_lost_to_a_full_disk_fail_the_job_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcome_module, "write_new_file", _enospc)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    earlier = job_dir / "earlier.txt"
    earlier.write_text("an earlier result")
    with pytest.raises(ResultsError, match="No space left on device") as raised:
        run_job(small_config(tmp_path, tasks=20), job_dir, job_num=3)
    assert "job 3: metrics.parquet could not be written" in str(raised.value)
    assert "job_status.json records the failure" in str(raised.value)
    status = status_of(job_dir)
    assert status["status"] == "failed" and "No space left on device" in status["reason"]
    assert status["metrics"] is None
    assert earlier.read_text() == "an earlier result"
    assert db_files(tmp_path) == []


def test_when_the_status_cannot_be_written_either_the_error_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcome_module, "write_new_file", _enospc)
    monkeypatch.setattr(outcome_module, "write_status", _enospc)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    with pytest.raises(ResultsError, match=r"job_status\.json could not be written either: .*No space left"):
        run_job(small_config(tmp_path, tasks=20), job_dir)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def _fill(directory: Path, leave_bytes: int) -> None:
    """Fill the file system of ``directory`` but for ``leave_bytes``."""
    reserve = directory / "reserve"
    if leave_bytes:
        reserve.write_bytes(b"r" * leave_bytes)
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    reserve.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_real_full_disk(tmp_path: Path, tiny_tmpfs: Path) -> None:
    sweep = tiny_tmpfs / "sweep"
    (sweep / "0").mkdir(parents=True)
    earlier = sweep / "0" / "metrics.parquet"
    earlier.write_bytes(b"PAR1 an earlier job's results PAR1")
    (sweep / "1").mkdir()
    (sweep / "2").mkdir()
    _fill(tiny_tmpfs, leave_bytes=8192)  # room for a status, not for a metrics file
    cfg = small_config(tmp_path, tasks=20)  # the database lives outside the full file system
    with pytest.raises(ResultsError, match="No space left on device") as raised:
        run_job(cfg, sweep / "1", job_num=1)
    assert "job_status.json records the failure" in str(raised.value)
    status = status_of(sweep / "1")
    assert status["status"] == "failed" and "No space left on device" in status["reason"]
    _fill(tiny_tmpfs, leave_bytes=0)
    with pytest.raises(ResultsError, match=r"could not be written either: .*No space left on device"):
        run_job(cfg, sweep / "2", job_num=2)
    assert earlier.read_bytes() == b"PAR1 an earlier job's results PAR1"
    assert sorted(p.name for p in sweep.rglob("*") if p.is_file()) == ["job_status.json", "metrics.parquet"]
    assert db_files(tmp_path) == []
