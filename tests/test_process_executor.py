"""executor=process: workers spread over spawned OS processes, audited across them; faults.kill."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from qbench.errors import DrainTimeoutError, LivelockError, WorkerProcessError
from qbench.kinds import ExecutorKind
from qbench.run.database import connect
from qbench.run.executors import EXECUTORS, drain_spec, run_drain_processes
from qbench.run.executors import process_shared as shared
from qbench.run.executors.process_executor import merge_process_stats, pool_share, shares
from qbench.run.job import run_job
from qbench.run.metrics import DrainStats
from qbench.run.pragmas import connection_settings
from qbench.run.queues.sql import run_sync
from qbench.settings import Config

from .conftest import small_config
from .test_executor import assert_busy_storm, assert_clean, section
from .test_thread_executor import prepared

PROCESS_COLUMNS = [
    "process_cpu_util_max_cores",
    "process_cpu_total_s",
    "process_rss_peak_max_bytes",
    "process_cpu_s",
    "process_rss_peak_bytes",
]


@pytest.fixture(autouse=True)
def own_host_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs here wait for no other job's measured work on this host (the host guard's directory)."""
    monkeypatch.setenv("QBENCH_LOCK_DIR", str(tmp_path / "locks"))


def worker_processes_left() -> list[psutil.Process]:
    """Spawned worker processes of this test process still around (the resource tracker is not one)."""
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                left.append(child)
        except psutil.NoSuchProcess:
            pass
    return left


def process_config(tmp_path: Path, processes: object = 0, **changes: object) -> Config:
    """executor=process; ``processes=0``: one per worker, as conf/executor/process.yaml has it."""
    processes = processes or changes.get("workers", 1)
    return small_config(
        tmp_path, executor=section("executor", kind="process", processes=processes), **changes
    )


def run_process_job(
    tmp_path: Path, processes: object = 0, **changes: object
) -> tuple[bool, str, pd.DataFrame]:
    cfg = process_config(tmp_path, processes, **changes)
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    outcome = run_job(cfg, job_dir)
    assert outcome.metrics_path is not None, outcome.reason
    assert not worker_processes_left()
    return outcome.ok, outcome.reason or "", pd.read_parquet(outcome.metrics_path)


def test_registered() -> None:
    assert EXECUTORS[ExecutorKind.PROCESS] is run_drain_processes


def test_workers_and_pool_spread_over_processes() -> None:
    assert shares(10, 3) == [4, 3, 3]
    assert shares(4, 4) == [1, 1, 1, 1]
    assert sum(shares(17, 5)) == 17
    assert pool_share(10, 10, 5) == 5  # per_worker: its own workers
    assert pool_share(4, 8, 4) == 2  # fixed 4 over two processes: two each
    assert pool_share(1, 8, 4) == 1  # shared: one per process (connections never cross processes)
    assert pool_share(4, 8, 1) == 1  # a one-worker process needs one connection


def _stats(claims: list[int], acks: list[int], e2e: list[float], busy: int, waits: list[float]) -> DrainStats:
    stats = DrainStats.for_tasks(len(claims))
    stats.claims[:] = claims
    stats.executions[:] = acks
    stats.acks[:] = acks
    stats.e2e_s[:] = e2e
    stats.claimed_s[:] = [x - 0.001 for x in e2e]
    stats.busy_by_phase["claim"] = busy
    stats.transactions, stats.acks_rejected = 10, 1
    stats.lock_wait_s.extend(waits)
    return stats


def test_merge_process_stats_is_exact() -> None:
    nan = math.nan
    # process A acked tasks 0 and 1; B claimed 1 again (redelivered: attempts 2) and acked 2;
    # A's clock started 0.5 s before the release, B's 0.25 s after it
    a = _stats([1, 1, 0], [1, 1, 0], [1.0, 2.0, nan], busy=2, waits=[0.1])
    b = _stats([0, 2, 1], [0, 0, 1], [nan, nan, 0.5], busy=3, waits=[0.2, 0.3])
    merged = merge_process_stats([(a, -0.5), (b, 0.25)])
    assert merged.claims.tolist() == [1, 2, 1]
    assert merged.executions.tolist() == [1, 1, 1]
    assert merged.acks.tolist() == [1, 1, 1]
    np.testing.assert_allclose(merged.e2e_s, [0.5, 1.5, 0.75])
    np.testing.assert_allclose(merged.claimed_s, [0.499, 1.499, 0.749])
    assert merged.busy_total == 5 and merged.transactions == 20 and merged.acks_rejected == 2
    assert sorted(merged.lock_wait_s) == [0.1, 0.2, 0.3]
    # the parts are left as they were
    assert a.e2e_s[0] == 1.0 and b.claims.tolist() == [0, 2, 1]


def test_merge_takes_the_earliest_ack_of_a_task_acked_twice() -> None:
    a = _stats([1], [1], [2.0], busy=0, waits=[])
    b = _stats([2], [1], [1.0], busy=0, waits=[])
    merged = merge_process_stats([(a, 0.0), (b, 0.0)])
    assert merged.acks.tolist() == [2]  # the audit calls it acked twice
    assert merged.e2e_s.tolist() == [1.0]


@pytest.mark.parametrize("processes", [2, 4])
def test_audit_across_processes(tmp_path: Path, processes: int) -> None:
    ok, reason, df = run_process_job(tmp_path, processes, workers=4, tasks=400)
    assert ok, reason
    assert_clean(df, 400)
    assert (df["tasks_duplicated"] == 0).all()
    assert (df["executor_kind"] == "process").all()
    assert (df["processes"] == processes).all()
    assert (df["faults_injected"] == 0).all()
    assert (df["pool_connections"] == 4).all()
    assert df[PROCESS_COLUMNS].notna().all().all()
    assert [len(x) for x in df["process_cpu_s"]] == [processes]
    assert (df["process_rss_peak_max_bytes"] > 10 * 2**20).all()
    assert (df["process_cpu_total_s"] <= df["cpu_user_s"] + df["cpu_sys_s"] + 1e-9).all()


def test_other_executors_have_no_process_columns(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, tasks=50)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    outcome = run_job(cfg, job_dir)
    assert outcome.ok and outcome.metrics_path is not None
    df = pd.read_parquet(outcome.metrics_path)
    assert (df["processes"] == 0).all() and (df["faults_injected"] == 0).all()
    assert df[PROCESS_COLUMNS].isna().all().all()


def kill_changes() -> dict[str, object]:
    return {
        "workers": 2,
        "tasks": 200,
        "faults": section("faults", kill=1),
        "service": section("service", kind="sleep", ms=5.0),
        "queue": section("queue", lease_s=0.5),
    }


@pytest.mark.parametrize("workers", [2, 4])  # processes of one thread; of two coroutines
def test_a_killed_worker_process_loses_nothing(tmp_path: Path, workers: int) -> None:
    ok, reason, df = run_process_job(tmp_path, 2, **{**kill_changes(), "workers": workers})
    assert ok, reason
    assert_clean(df, 200)
    assert (df["faults_injected"] == 1).all()
    assert (df["tasks_redelivered"] >= 1).all()
    # the two processes, then the one that replaced the killed one
    assert [len(x) for x in df["process_rss_peak_bytes"]] == [3]


def test_a_kill_that_loses_acknowledged_work_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the killed process's acknowledgements died with it: the audit must say so.
    def forgotten(self: shared.Mirror, t_start: float) -> DrainStats:
        return DrainStats.for_tasks(len(shared.array(self.acks)))

    monkeypatch.setattr(shared.Mirror, "stats", forgotten)
    ok, reason, df = run_process_job(tmp_path, **kill_changes())
    assert not ok
    assert "audit failed" in reason and "lost (never acknowledged)" in reason
    assert (df["tasks_lost"] > 0).all() and not df["audit_ok"].any()


def test_the_fence_publishes_held_tasks_and_mirrors_acks(tmp_path: Path) -> None:
    cfg = process_config(tmp_path, workers=1, tasks=3)
    db_path, queue, backlog = prepared(cfg, tmp_path)
    ctx = multiprocessing.get_context("spawn")
    slot = shared.Slot.create(ctx, 0, 1, 1, 3, fence=True)
    total = shared.SharedCount(ctx.RawArray("q", 2), 1)
    fenced = shared.FencedQueue(queue, slot, backlog.first_id, total)
    conn = connect(db_path, connection_settings(cfg))
    try:
        claimed = run_sync(conn, fenced.claim(7, time.time()))
        assert [task.id for task in claimed] == [backlog.first_id]
        assert slot.killable()
        acked = run_sync(conn, fenced.ack(7, [backlog.first_id], time.time()))
        assert acked == [backlog.first_id]
    finally:
        conn.close()
    assert not slot.killable() and slot.acking.value == 0
    assert total.total() == 1
    assert slot.mirror is not None
    stats = slot.mirror.stats(0.0)
    assert stats.claims.tolist() == [1, 0, 0] and stats.acks.tolist() == [1, 0, 0]
    assert stats.executions.tolist() == [1, 0, 0]
    assert stats.e2e_s[0] > 0 and np.isnan(stats.e2e_s[1:]).all()


def kill_one_worker_soon(delay_s: float) -> None:
    """SIGKILL one of this process's worker processes ``delay_s`` from now, as an OOM killer would."""

    def kill() -> None:
        for child in worker_processes_left()[:1]:
            child.kill()

    threading.Timer(delay_s, kill).start()


def test_a_worker_process_that_dies_fails_the_drain_and_stops_the_others(tmp_path: Path) -> None:
    cfg = process_config(tmp_path, workers=3, tasks=2000, service=section("service", kind="sleep", ms=5.0))
    db_path, queue, backlog = prepared(cfg, tmp_path)
    spec = replace(drain_spec(cfg, db_path, backlog.first_id), on_start=lambda t: kill_one_worker_soon(0.2))
    with pytest.raises(
        WorkerProcessError,
        match=r"worker process \d \(pid \d+\) ended without reporting \(killed by SIGKILL\)",
    ):
        run_drain_processes(spec, queue)
    assert not worker_processes_left()


def test_a_worker_process_that_cannot_open_the_database_fails_at_once(tmp_path: Path) -> None:
    cfg = process_config(tmp_path, workers=2, tasks=10)
    _, queue, backlog = prepared(cfg, tmp_path)
    spec = drain_spec(cfg, tmp_path / "gone" / "t.db", backlog.first_id)
    started = time.perf_counter()
    with pytest.raises(WorkerProcessError, match="failed: OperationalError: unable to open database file"):
        run_drain_processes(spec, queue)
    assert time.perf_counter() - started < 30
    assert not worker_processes_left()


def test_iteration_timeout_stops_every_worker_process(tmp_path: Path) -> None:
    cfg = process_config(
        tmp_path,
        workers=2,
        tasks=10,
        service=section("service", kind="cpu", ms=10_000),
        iteration_timeout_s=1.0,
    )
    db_path, queue, backlog = prepared(cfg, tmp_path)
    released: list[float] = []
    spec = replace(drain_spec(cfg, db_path, backlog.first_id), on_start=released.append)
    with pytest.raises(DrainTimeoutError, match="iteration_timeout_s=1: 0 of 10 tasks acknowledged"):
        run_drain_processes(spec, queue)
    # the deadline counts from the release; the cpu service stops at SIGTERM, well before its 10 s
    assert time.perf_counter() - released[0] < 5.0
    assert not worker_processes_left()


def test_ctrl_c_stops_every_worker_process(tmp_path: Path) -> None:
    cfg = process_config(tmp_path, workers=2, tasks=5000, service=section("service", kind="sleep", ms=50.0))
    db_path, queue, backlog = prepared(cfg, tmp_path)
    released: list[float] = []

    def at_start(t_start: float) -> None:
        released.append(t_start)
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    spec = replace(drain_spec(cfg, db_path, backlog.first_id), on_start=at_start)
    with pytest.raises(KeyboardInterrupt):
        run_drain_processes(spec, queue)
    assert time.perf_counter() - released[0] < 5.0
    assert not worker_processes_left()


def assert_storm_survived(ok: bool, reason: str, df: pd.DataFrame) -> None:
    """Done, or failed as a livelock or a timeout; never a lost task."""
    assert (
        (df["tasks_lost"] == 0).all() if ok else ("LivelockError" in reason or "DrainTimeoutError" in reason)
    )
    if ok:
        assert_clean(df, 100)
        assert_busy_storm(df, "16 workers in processes with no busy timeout must collide")


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "processes"), [("native", 4), ("app", 4), ("native", 16)])
def test_busy_storm_16_workers_in_processes(tmp_path: Path, policy: str, processes: int) -> None:
    ok, reason, df = run_process_job(
        tmp_path,
        processes,
        workers=16,
        tasks=100,
        busy=section("busy", policy=policy, timeout_ms=0),
        claim=section("claim", tx="immediate"),
        iteration_timeout_s=60.0,
    )
    assert_storm_survived(ok, reason, df)


def test_watchdog_counts_busy_errors_across_processes(tmp_path: Path) -> None:
    cfg = process_config(
        tmp_path,
        workers=2,
        tasks=10,
        busy=section("busy", timeout_ms=0),
        watchdog_s=1.0,
        # were the busy errors not counted across processes, this would end as a timeout
        iteration_timeout_s=15.0,
    )
    db_path, queue, backlog = prepared(cfg, tmp_path)
    blocker = connect(db_path, connection_settings(cfg))
    blocker.execute("BEGIN IMMEDIATE")  # every claim meets SQLITE_BUSY, none gets through
    try:
        with pytest.raises(LivelockError, match="livelock: 0 acks in"):
            run_drain_processes(drain_spec(cfg, db_path, backlog.first_id), queue)
    finally:
        blocker.rollback()
        blocker.close()
    assert not worker_processes_left()
