"""Integration: real SQLite files, real aiosqlite threads, busy storms included."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from qbench.kinds import TxMode
from qbench.run.audit import audit_drain
from qbench.run.database import connect, prepare_database
from qbench.run.executors import drain_spec, run_drain
from qbench.run.job import run_job
from qbench.run.pragmas import connection_settings
from qbench.run.queues import Claimed, SqliteQueue, make_queue
from qbench.run.queues.sql import Transaction, run_sync
from qbench.settings import Config

from .conftest import small_config


def run(tmp_path: Path, **changes: object) -> pd.DataFrame:
    cfg = small_config(tmp_path, **changes)
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    outcome = run_job(cfg, job_dir)
    assert outcome.ok, outcome.reason
    assert outcome.metrics_path is not None
    return pd.read_parquet(outcome.metrics_path)


def section(name: str, **values: object) -> object:
    return dataclasses.replace(getattr(Config(), name), **values)


def assert_clean(df: pd.DataFrame, tasks: int) -> None:
    assert df["audit_ok"].all()
    assert df["integrity_ok"].all()
    assert (df["tasks_lost"] == 0).all() and (df["tasks_acked_twice"] == 0).all()
    assert (df["tasks_completed"] == tasks).all()


def assert_busy_storm(df: pd.DataFrame, why: str) -> None:
    """Workers collided, retried, and every busy error was counted once by phase and by code."""
    assert df["busy_total"].sum() > 0, why
    assert df["retries"].sum() > 0
    assert df["busy_code_busy"].sum() > 0
    assert (
        df["busy_total"] == df[[f"busy_phase_{p}" for p in ("begin", "claim", "ack", "commit")]].sum(axis=1)
    ).all()
    assert df["busy_rate"].between(0, 1).all()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["native", "app"])
def test_busy_storm_50_workers_timeout_zero(tmp_path: Path, policy: str) -> None:
    df = run(
        tmp_path,
        workers=50,
        # native + timeout 0 + 50 workers collapses to a few dozen tasks/s (a retry storm):
        # a small backlog is enough to show it survives
        tasks=60,
        busy=section("busy", policy=policy, timeout_ms=0),
        claim=section("claim", tx="immediate"),
    )
    assert_clean(df, 60)
    assert_busy_storm(df, "50 workers with no busy timeout must collide")


def test_deferred_mode_meets_busy_snapshot(tmp_path: Path) -> None:
    df = run(tmp_path, workers=8, tasks=400, claim=section("claim", tx="deferred"))
    assert_clean(df, 400)
    # BEGIN; SELECT; UPDATE: another writer committing in between makes the UPDATE fail at
    # once with SQLITE_BUSY_SNAPSHOT, whatever the busy timeout.
    assert df["busy_code_busy_snapshot"].sum() > 0
    assert df["busy_phase_claim"].sum() > 0


def test_rollback_journal_with_many_workers(tmp_path: Path) -> None:
    df = run(
        tmp_path,
        workers=10,
        tasks=150,
        journal=section("journal", mode="delete"),
        synchronous="off",
        claim=section("claim", tx="immediate", batch=4),
    )
    assert_clean(df, 150)
    assert (df["journal_mode"] == "delete").all() and (df["synchronous"] == "off").all()
    assert df["wal_size_max_bytes"].isna().all()


def test_leases_of_a_crashed_consumer_are_redelivered(tmp_path: Path) -> None:
    cfg = small_config(
        tmp_path, workers=3, tasks=20, queue=section("queue", lease_s=0.2, poll_interval_ms=5.0)
    )
    db_path = tmp_path / "crash.db"
    queue = make_queue(cfg)
    settings = connection_settings(cfg)
    backlog = prepare_database(
        db_path, queue, settings, history_rows=10, tasks=20, payload=b"p", enqueue_batch=7
    )
    # A consumer leased three tasks and died: its lease is already over.
    crashed = SqliteQueue(TxMode.IMMEDIATE, 3, lease_s=-1.0)
    conn = connect(db_path, settings)
    run_sync(conn, crashed.claim(999_999, time.time()))
    conn.close()
    result = run_drain(drain_spec(cfg, db_path, backlog.first_id), queue)
    audit = audit_drain(result.stats.claims, result.stats.executions, result.stats.acks)
    assert audit.ok, audit.message
    assert audit.tasks_redelivered == 3
    assert audit.tasks_acked == 20


@pytest.mark.slow
def test_lease_shorter_than_service_fails_loudly_not_silently(tmp_path: Path) -> None:
    cfg = small_config(
        tmp_path,
        # more workers than tasks: an idle worker always finds the expired lease and takes it
        workers=3,
        tasks=2,
        iteration_timeout_s=1.5,
        queue=section("queue", lease_s=0.05, poll_interval_ms=5.0),
        service=section("service", kind="sleep", ms=200.0),
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    outcome = run_job(cfg, job_dir)
    assert not outcome.ok
    assert "DrainTimeoutError" in outcome.reason and "queue.lease_s" in outcome.reason
    assert json.loads((job_dir / "job_status.json").read_text())["status"] == "failed"


def test_shared_connection_makes_workers_wait_for_the_pool(tmp_path: Path) -> None:
    df = run(
        tmp_path,
        workers=10,
        tasks=200,
        pool=section("pool", kind="shared"),
        service=section("service", kind="sleep", ms=1.0),
    )
    assert_clean(df, 200)
    assert (df["pool_connections"] == 1).all()
    assert df["pool_wait_total_s"].sum() > 0
    assert df["pool_wait_p99_ms"].iloc[0] > 0


def test_all_connections_closed_after_every_iteration(tmp_path: Path) -> None:
    before = threading.active_count()
    df = run(tmp_path, workers=12, tasks=100, iterations=2, warmup=1)
    assert len(df) == 3
    # aiosqlite runs one thread per open connection
    assert threading.active_count() == before


@pytest.mark.slow
def test_phases_timings_and_ceiling(tmp_path: Path) -> None:
    df = run(
        tmp_path,
        workers=2,
        tasks=300,
        iterations=2,
        warmup=1,
        ceiling=section("ceiling", enabled=True, tasks=200),
        service=section("service", kind="cpu", ms=0.2),
    )
    assert list(df["phase"]) == ["warmup", "measure", "measure"]
    assert list(df["iteration"]) == [0, 1, 2]
    assert df["run_id"].nunique() == 1
    assert (df["throughput_tps"] > 0).all()
    assert (df["throughput_tps"] - df["tasks_completed"] / df["duration_s"]).abs().max() < 1e-6
    assert (df["ceiling_tps"] > 0).all()
    ratio = df["throughput_tps"] / df["ceiling_tps"]
    assert (df["harness_efficiency"] - ratio).abs().max() < 1e-9
    assert (df["service_latency_p50_ms"] >= 0.2).all()
    assert (df["e2e_latency_p50_ms"] <= df["e2e_latency_p99_ms"]).all()
    assert (df["e2e_latency_max_ms"] <= df["duration_s"] * 1000 + 1).all()
    assert (df["claim_latency_p50_ms"] > 0).all()
    assert (df["lock_wait_p99_ms"] > 0).all()
    assert (df["enqueue_s"] > 0).all()
    assert (df["cpu_user_s"] + df["cpu_sys_s"] > 0).all()
    assert (df["rss_peak_bytes"] > 0).all()
    assert (df["db_size_bytes"] > 0).all()
    assert (df["wal_size_max_bytes"] > 0).all()


def test_minimal_metrics_keep_counts_and_drop_timings(tmp_path: Path) -> None:
    df = run(tmp_path, workers=2, metrics=section("metrics", level="minimal"))
    assert_clean(df, 200)
    assert df["e2e_latency_p99_ms"].isna().all()
    assert df["lock_wait_total_s"].isna().all()
    assert (df["throughput_tps"] > 0).all()


def test_database_removed_unless_kept(tmp_path: Path) -> None:
    run(tmp_path)
    assert not list(tmp_path.glob("qbench-*.db*"))
    (tmp_path / "kept").mkdir()
    run(tmp_path / "kept", db=section("db", dir=str(tmp_path / "kept"), keep=True))
    assert list((tmp_path / "kept").glob("qbench-*.db"))


class DoubleHandingQueue(SqliteQueue):
    """A broken queue: its second claim hands out the first claim's task again."""

    def __init__(self, tx_mode: TxMode, batch: int, lease_s: float) -> None:
        super().__init__(tx_mode, batch, lease_s)
        self.calls = 0
        self.first: Claimed | None = None

    def claim(self, token: int, now: float) -> Transaction[list[Claimed]]:
        rows = yield from super().claim(token, now)
        self.calls += 1
        if self.first is None and rows:
            self.first = rows[0]
        elif self.calls == 2 and self.first is not None:
            rows = [*rows, self.first]
        return rows


def test_audit_catches_a_task_handed_to_two_workers_at_once(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, workers=2, tasks=10, service=section("service", kind="sleep", ms=20.0))
    db_path = tmp_path / "double.db"
    queue = DoubleHandingQueue(TxMode.AUTOCOMMIT, 1, 30.0)
    settings = connection_settings(cfg)
    backlog = prepare_database(
        db_path, queue, settings, history_rows=0, tasks=10, payload=b"p", enqueue_batch=10
    )
    stats = run_drain(drain_spec(cfg, db_path, backlog.first_id), queue).stats
    audit = audit_drain(stats.claims, stats.executions, stats.acks, double_handed=stats.double_handed)
    assert stats.double_handed == 1
    assert not audit.ok and "two workers at once" in audit.message
