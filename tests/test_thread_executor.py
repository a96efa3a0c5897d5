"""executor=thread: OS threads over plain sqlite3 connections, audited like the async executor."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qbench.errors import DrainTimeoutError
from qbench.kinds import ExecutorKind
from qbench.run.database import Backlog, connect, prepare_database
from qbench.run.executors import EXECUTORS, drain_spec, run_drain_threads, thread_executor
from qbench.run.pragmas import connection_settings
from qbench.run.queues import QueueUnderTest, make_queue
from qbench.settings import Config

from .conftest import run_qbench, small_config
from .test_executor import assert_busy_storm, assert_clean, run, section


def thread_run(tmp_path: Path, **changes: object) -> pd.DataFrame:
    return run(tmp_path, executor=section("executor", kind="thread"), **changes)


def prepared(cfg: Config, tmp_path: Path) -> tuple[Path, QueueUnderTest, Backlog]:
    """A database with the config's backlog, ready for an executor to drain."""
    db_path = tmp_path / "t.db"
    queue = make_queue(cfg)
    backlog = prepare_database(
        db_path,
        queue,
        connection_settings(cfg),
        history_rows=0,
        tasks=cfg.tasks,
        payload=b"x",
        enqueue_batch=100,
    )
    return db_path, queue, backlog


def test_registered() -> None:
    assert EXECUTORS[ExecutorKind.THREAD] is run_drain_threads


@pytest.mark.parametrize("workers", [1, 4])
def test_drain_audits_clean_and_every_pragma_took(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[sqlite3.Connection] = []
    read_back: list[tuple[Any, ...]] = []
    real_connect = connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        read_back.append(
            (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA busy_timeout").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
            )
        )
        return conn

    monkeypatch.setattr(thread_executor, "connect", spy)
    df = thread_run(tmp_path, workers=workers, tasks=300)
    assert_clean(df, 300)
    assert (df["executor_kind"] == "thread").all()
    assert (df["pool_connections"] == workers).all()
    assert len(opened) == workers
    cfg = Config()
    assert set(read_back) == {("wal", cfg.busy.timeout_ms, 1)}  # WAL, NORMAL
    for conn in opened:  # every connection closed on return
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("select 1")


def test_a_smaller_pool_is_shared_by_the_threads(tmp_path: Path) -> None:
    df = thread_run(tmp_path, workers=4, tasks=200, pool=section("pool", kind="fixed", size=2))
    assert_clean(df, 200)
    assert (df["pool_connections"] == 2).all()
    assert (df["pool_wait_p99_ms"] >= 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["native", "app"])
def test_busy_storm_16_threads_timeout_zero(tmp_path: Path, policy: str) -> None:
    df = thread_run(
        tmp_path,
        workers=16,
        tasks=100,
        busy=section("busy", policy=policy, timeout_ms=0),
        claim=section("claim", tx="immediate"),
    )
    assert_clean(df, 100)
    assert_busy_storm(df, "16 threads with no busy timeout must collide")


@pytest.mark.slow
def test_iteration_timeout_holds_for_cpu_service(tmp_path: Path) -> None:
    cfg = small_config(
        tmp_path,
        executor=section("executor", kind="thread"),
        workers=3,
        tasks=10,
        service=section("service", kind="cpu", ms=10_000),
        iteration_timeout_s=1.0,
    )
    db_path, queue, backlog = prepared(cfg, tmp_path)
    started = time.perf_counter()
    with pytest.raises(DrainTimeoutError, match="iteration_timeout_s=1"):
        run_drain_threads(drain_spec(cfg, db_path, backlog.first_id), queue)
    assert time.perf_counter() - started < 3.0


@pytest.mark.slow
def test_end_to_end_cli(tmp_path: Path) -> None:
    proc = run_qbench(
        ["executor=thread", "workers=2", "tasks=200", "iterations=1", "warmup=0", f"db.dir={tmp_path}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    found = list(tmp_path.rglob("metrics.parquet"))
    assert len(found) == 1, proc.stdout
    df = pd.read_parquet(found[0])
    assert (df["executor_kind"] == "thread").all()
    assert_clean(df, 200)


def test_config_default_is_unchanged() -> None:
    assert dataclasses.asdict(Config())["executor"]["kind"] == "async"


def test_ctrl_c_stops_the_threads_promptly_and_closes_every_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[sqlite3.Connection] = []

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(thread_executor, "connect", spy)
    cfg = small_config(
        tmp_path,
        executor=section("executor", kind="thread"),
        workers=4,
        tasks=1000,
        service=section("service", kind="sleep", ms=50),
    )
    db_path, queue, backlog = prepared(cfg, tmp_path)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_drain_threads(drain_spec(cfg, db_path, backlog.first_id), queue)
    assert time.perf_counter() - started < 2.0
    assert not [t for t in threading.enumerate() if t.name.startswith("qbench-worker-")]
    assert len(opened) == 4
    for conn in opened:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("select 1")
