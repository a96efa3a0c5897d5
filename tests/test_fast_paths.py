"""The executors' fast paths: one call per transaction (and per ack + next claim) on a
connection's thread, compact per-task state, seeded service-time models, and the iteration
deadline for every service kind."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import sqlite3
import threading
import time
from array import array
from pathlib import Path
from typing import cast

import aiosqlite
import numpy as np
import pytest

from qbench.errors import DrainTimeoutError
from qbench.kinds import ServiceDist, ServiceKind, TxMode
from qbench.run.audit import audit_drain
from qbench.run.database import connect, prepare_database
from qbench.run.executors import drain_spec, run_drain, run_drain_threads
from qbench.run.executors.common import Ledger, merge_stats
from qbench.run.executors.pool import on_thread
from qbench.run.executors.protocol import DrainResult, DrainSpec
from qbench.run.metrics import DrainStats, percentiles_ms
from qbench.run.pragmas import connection_settings
from qbench.run.queues import make_queue
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sql import BusyError, Transaction, run_or_roll_back, run_sync, run_then
from qbench.run.queues.sqlite_queue import SqliteQueue
from qbench.run.service import ServiceTimes, draw
from qbench.settings import Config

from .conftest import small_config
from .test_executor import section

# ---------------------------------------------------------------- aiosqlite adapter


def test_aiosqlite_private_execute_is_still_what_on_thread_relies_on() -> None:
    """on_thread uses aiosqlite's private Connection._execute(fn, *args): if a new aiosqlite
    renames or changes it, this fails first (and pyproject.toml pins the tested range)."""
    execute = getattr(aiosqlite.Connection, "_execute", None)
    assert execute is not None, (
        "aiosqlite.Connection._execute is gone: fix qbench.run.executors.pool.on_thread"
    )
    assert inspect.iscoroutinefunction(execute), "aiosqlite.Connection._execute is no longer a coroutine"
    params = list(inspect.signature(execute).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "fn"], f"aiosqlite _execute signature changed: {params}"
    assert any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params), "_execute no longer takes *args"
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property), "aiosqlite _conn changed"


def test_on_thread_runs_the_function_on_the_connections_own_thread(tmp_path: Path) -> None:
    async def main() -> tuple[int, str, str, bool]:
        conn = await aiosqlite.connect(tmp_path / "a.db", isolation_level=None)
        try:
            loop_thread = threading.current_thread().name

            def where(raw: sqlite3.Connection) -> tuple[int, str]:
                return raw.execute("select 41 + 1").fetchone()[0], threading.current_thread().name

            value, thread = await on_thread(conn, where)

            def fail(raw: sqlite3.Connection) -> None:
                raw.execute("select * from no_such_table")

            with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
                await on_thread(conn, fail)
            return value, thread, loop_thread, isinstance(conn._conn, sqlite3.Connection)
        finally:
            await conn.close()

    value, thread, loop_thread, raw = asyncio.run(main())
    assert value == 42 and raw
    assert thread != loop_thread


# ---------------------------------------------------------------- one-call transactions


def _backlog(tmp_path: Path, tasks: int, tx: TxMode = TxMode.AUTOCOMMIT) -> tuple[Path, SqliteQueue]:
    cfg = small_config(tmp_path)
    queue = SqliteQueue(tx, 1, 30.0)
    db_path = tmp_path / "q.db"
    prepare_database(
        db_path, queue, connection_settings(cfg), history_rows=0, tasks=tasks, payload=b"p", enqueue_batch=100
    )
    return db_path, queue


def _no_wait(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 0")
    return conn


@pytest.mark.parametrize("tx", [TxMode.AUTOCOMMIT, TxMode.IMMEDIATE])
def test_run_then_acks_and_claims_in_one_call(tmp_path: Path, tx: TxMode) -> None:
    db_path, queue = _backlog(tmp_path, 3, tx)
    conn = _no_wait(db_path)
    try:
        first = run_sync(conn, queue.claim(1, time.time()))
        waits: list[float] = []
        acked, claimed, started = run_then(
            conn, queue.ack(1, [t.id for t in first], time.time()), queue.claim(2, time.time()), waits.append
        )
        assert acked == [first[0].id]
        assert isinstance(claimed, list) and [t.id for t in claimed] == [first[0].id + 1]
        assert started <= time.perf_counter()
        assert len(waits) == 2  # one write-lock statement per transaction, each timed
        assert not conn.in_transaction
    finally:
        conn.close()


def test_run_then_a_busy_ack_claims_nothing_and_a_busy_claim_keeps_the_ack(tmp_path: Path) -> None:
    db_path, queue = _backlog(tmp_path, 3, TxMode.IMMEDIATE)
    conn, blocker = _no_wait(db_path), _no_wait(db_path)
    try:
        first = run_sync(conn, queue.claim(1, time.time()))
        ids = [t.id for t in first]
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(BusyError) as busy:
            run_then(conn, queue.ack(1, ids, time.time()), queue.claim(2, time.time()))
        assert busy.value.phase == "begin" and busy.value.code_name == "busy"
        assert not conn.in_transaction
        blocker.execute("ROLLBACK")

        def ack_then_block() -> Transaction[list[int]]:
            acked = yield from queue.ack(1, ids, time.time())
            blocker.execute("BEGIN IMMEDIATE")  # another writer gets in between the two
            return acked

        acked, claimed, _ = run_then(conn, ack_then_block(), queue.claim(2, time.time()))
        assert acked == ids
        assert isinstance(claimed, BusyError) and not conn.in_transaction
        blocker.execute("ROLLBACK")
        counts = run_sync(conn, queue.count_by_state())
        assert counts == {"ready": 2, "leased": 0, "done": 1}  # the ack committed, the claim did not
    finally:
        conn.close()
        blocker.close()


def test_run_or_roll_back_leaves_no_transaction_open(tmp_path: Path) -> None:
    db_path, queue = _backlog(tmp_path, 2, TxMode.DEFERRED)
    conn, other = _no_wait(db_path), _no_wait(db_path)
    try:

        def claim_while_another_writes() -> Transaction[list[Claimed]]:
            gen = queue.claim(1, time.time())
            stmt = next(gen)  # BEGIN DEFERRED
            rows = yield stmt
            stmt = gen.send(rows)  # SELECT: this connection now reads a snapshot
            rows = yield stmt
            other.execute("UPDATE tasks SET enqueued_at = enqueued_at + 1")  # another writer commits
            try:
                while True:
                    stmt = gen.send(rows)
                    rows = yield stmt
            except StopIteration as done:
                return cast(list[Claimed], done.value)

        with pytest.raises(BusyError) as busy:
            run_or_roll_back(conn, claim_while_another_writes())
        assert busy.value.code_name == "busy_snapshot"
        assert not conn.in_transaction
    finally:
        conn.close()
        other.close()


# ---------------------------------------------------------------- executors end to end


def _drain(
    tmp_path: Path, *, threads: bool = False, **changes: object
) -> tuple[Config, DrainSpec, DrainResult, QueueUnderTest]:
    cfg = small_config(tmp_path, **changes)
    queue = make_queue(cfg)
    db_path = tmp_path / "d.db"
    backlog = prepare_database(
        db_path,
        queue,
        connection_settings(cfg),
        history_rows=0,
        tasks=cfg.tasks,
        payload=b"p",
        enqueue_batch=500,
    )
    spec = drain_spec(cfg, db_path, backlog.first_id)
    result = (run_drain_threads if threads else run_drain)(spec, queue)
    conn = connect(db_path, connection_settings(cfg))
    try:
        states = run_sync(conn, queue.count_by_state())
    finally:
        conn.close()
    stats = result.stats
    audit = audit_drain(
        stats.claims,
        stats.executions,
        stats.acks,
        acks_unknown=stats.acks_unknown,
        double_handed=stats.double_handed,
        queue_states=states,
        expected_done_rows=cfg.tasks,
    )
    assert audit.ok, audit.message
    return cfg, spec, result, queue


@pytest.mark.parametrize("batch", [1, 4])
def test_ack_and_claim_together_keep_the_audit_clean_with_8_workers_on_a_pool_of_2(
    tmp_path: Path, batch: int
) -> None:
    _, _, result, _ = _drain(
        tmp_path,
        workers=8,
        tasks=400,
        pool=section("pool", kind="fixed", size=2),
        claim=section("claim", batch=batch),
        service=section("service", kind="sleep", ms=0.2),
    )
    stats = result.stats
    assert result.pool_connections == 2
    assert stats.tasks_acked == 400 and stats.acks_rejected == 0 and stats.acks_given_up == 0
    # every claim and every ack is counted as a transaction, combined or not
    claims = int(stats.claims.sum())
    assert stats.transactions >= claims // batch + 400 // batch
    assert len(stats.pool_wait_s) > 0 and len(stats.lock_wait_s) >= stats.transactions - stats.busy_total
    assert len(stats.service_s) == 400


@pytest.mark.parametrize("policy", ["native", "app"])
def test_busy_errors_are_still_counted_by_phase_with_no_busy_timeout(tmp_path: Path, policy: str) -> None:
    _, _, result, _ = _drain(
        tmp_path,
        workers=8,
        tasks=300,
        busy=section("busy", policy=policy, timeout_ms=0),
        claim=section("claim", tx="immediate"),
    )
    stats = result.stats
    assert stats.busy_total > 0, "8 workers with no busy timeout must collide"
    assert stats.busy_total == sum(stats.busy_by_phase.values()) == sum(stats.busy_by_code.values())
    assert stats.busy_by_code["busy"] > 0
    # every busy error is retried (none given up with the default max_retries)
    assert stats.retries == stats.busy_total
    assert stats.claims_given_up == 0 and stats.acks_given_up == 0


def test_a_given_up_ack_leaves_the_lease_to_expire(tmp_path: Path) -> None:
    """With no retries and no busy timeout, given-up acks happen; their tasks come back after
    the lease and are acknowledged later: nothing lost."""
    _, _, result, _ = _drain(
        tmp_path,
        workers=8,
        tasks=200,
        busy=section("busy", policy="native", timeout_ms=0, max_retries=0),
        claim=section("claim", tx="immediate"),
        queue=section("queue", lease_s=0.2, poll_interval_ms=5.0),
    )
    stats = result.stats
    assert stats.tasks_acked == 200
    assert stats.busy_total > 0 and stats.retries == 0
    # (a given-up lease requeue is neither)
    assert 0 < stats.claims_given_up + stats.acks_given_up <= stats.busy_total
    if stats.acks_given_up:
        assert int((stats.claims > 1).sum()) > 0  # redelivered after the lease ran out


# ---------------------------------------------------------------- compact state


def test_event_timings_are_compact_float64_buffers() -> None:
    stats = DrainStats.for_tasks(3)
    for buf in (stats.lock_wait_s, stats.pool_wait_s, stats.claim_latency_s, stats.service_s):
        assert isinstance(buf, array) and buf.typecode == "d" and buf.itemsize == 8
    stats.service_s.append(0.001)
    stats.service_s.extend([0.002, 0.003])
    part = DrainStats.counters_only()
    part.service_s.extend(array("d", [0.004]))
    part.retries = 2
    merge_stats(stats, part)
    assert len(stats.service_s) == 4 and list(stats.service_s) == [0.001, 0.002, 0.003, 0.004]
    assert np.asarray(stats.service_s).dtype == np.float64
    assert percentiles_ms(stats.service_s, [50])[0] == pytest.approx(2.5)
    assert sum(stats.service_s) == pytest.approx(0.01) and stats.retries == 2


def _spec(tmp_path: Path, tasks: int, **changes: object) -> DrainSpec:
    cfg = small_config(tmp_path, tasks=tasks)
    spec = drain_spec(cfg, tmp_path / "x.db", 11)
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def test_ledger_holds_leases_in_arrays_and_still_sees_double_handing(tmp_path: Path) -> None:
    stats = DrainStats.for_tasks(4)
    ledger = Ledger(_spec(tmp_path, 4, lease_s=30.0), stats)
    now = time.time()
    ledger.hold([Claimed(11, 1, None), Claimed(12, 1, None)], 7, now)
    assert stats.claims.tolist() == [1, 1, 0, 0] and not math.isnan(stats.claimed_s[0])
    ledger.hold([Claimed(11, 2, None)], 8, now)  # 7's lease on 11 still runs
    assert stats.double_handed == 1 and stats.claims[0] == 2
    ledger.release(7, [11, 12])  # 11 is 8's now: 7 releases 12 only
    ledger.hold([Claimed(12, 2, None)], 9, now)
    assert stats.double_handed == 1
    ids = ledger.executed([Claimed(11, 2, None), Claimed(99, 1, None)])
    assert ids == [11, 99] and stats.executions.tolist() == [1, 0, 0, 0]
    assert not ledger.count_acks(ids, [11, 99])
    assert stats.acks_unknown == 1 and ledger.acked_unique == 1 and stats.e2e_s[0] >= 0


# ---------------------------------------------------------------- service times


def test_fixed_service_times_are_the_median_and_take_no_memory() -> None:
    times = ServiceTimes(ServiceDist.FIXED, 0.004, 0.5, 1, 1_000_000)
    assert times.fixed and times.seconds(0) == times.seconds(999_999) == 0.004
    assert (times.as_array(5) == 0.004).all()


@pytest.mark.parametrize("dist", [ServiceDist.EXPONENTIAL, ServiceDist.LOGNORMAL])
def test_drawn_service_times_have_the_median_and_shape(dist: ServiceDist) -> None:
    median, sigma, n = 0.01, 0.8, 400_000
    values = draw(dist, median, sigma, 7, n)
    assert values.dtype == np.float64 and len(values) == n and (values > 0).all()
    assert np.median(values) == pytest.approx(median, rel=0.02)
    if dist is ServiceDist.EXPONENTIAL:
        # mean / median = 1 / ln 2, and the spread equals the mean
        assert values.mean() / median == pytest.approx(1 / math.log(2), rel=0.02)
        assert values.std() == pytest.approx(values.mean(), rel=0.02)
    else:
        logs = np.log(values)
        assert logs.mean() == pytest.approx(math.log(median), abs=0.01)
        assert logs.std() == pytest.approx(sigma, rel=0.02)


def test_service_times_are_deterministic_by_seed() -> None:
    a = ServiceTimes(ServiceDist.LOGNORMAL, 0.002, 0.5, 3, 1000)
    b = ServiceTimes(ServiceDist.LOGNORMAL, 0.002, 0.5, 3, 1000)
    c = ServiceTimes(ServiceDist.LOGNORMAL, 0.002, 0.5, 4, 1000)
    assert np.array_equal(a.as_array(1000), b.as_array(1000))
    assert not np.array_equal(a.as_array(1000), c.as_array(1000))
    assert a.seconds(5) == float(a.as_array(1000)[5])
    assert a.seconds(-1) == a.seconds(1000) == 0.002  # outside the backlog: the median


@pytest.mark.parametrize("threads", [False, True], ids=["async", "thread"])
def test_every_executor_serves_task_i_for_its_drawn_time(tmp_path: Path, threads: bool) -> None:
    _, spec, result, _ = _drain(
        tmp_path,
        threads=threads,
        workers=1,
        tasks=30,
        seed=5,
        service=section("service", kind="cpu", ms=1.0, dist=ServiceDist.EXPONENTIAL),
    )
    expected = ServiceTimes(spec.service_dist, spec.service_s, spec.service_sigma, spec.seed, spec.tasks)
    served = np.asarray(result.stats.service_s)
    want = expected.as_array(30)
    assert len(served) == 30 and want.std() > 0
    # one worker claims in id order; busy work never ends before its time
    assert (served >= want - 1e-6).all()
    assert (served < want + 1.0).all()


# ---------------------------------------------------------------- the iteration deadline


@pytest.mark.parametrize("threads", [False, True], ids=["async", "thread"])
@pytest.mark.parametrize(
    ("kind", "dist"),
    [
        (ServiceKind.CPU, ServiceDist.FIXED),
        (ServiceKind.SLEEP, ServiceDist.FIXED),
        (ServiceKind.CPU, ServiceDist.LOGNORMAL),
        (ServiceKind.SLEEP, ServiceDist.EXPONENTIAL),
    ],
)
def test_iteration_timeout_holds_for_every_service_kind(
    tmp_path: Path, threads: bool, kind: ServiceKind, dist: ServiceDist
) -> None:
    """service.ms=10000 workers=3 iteration_timeout_s=1: a timeout after about 1 s, not 30."""
    cfg = small_config(
        tmp_path,
        workers=3,
        tasks=20,
        service=section("service", kind=kind, ms=10_000.0, dist=dist),
        iteration_timeout_s=1.0,
    )
    queue = make_queue(cfg)
    db_path = tmp_path / "t.db"
    backlog = prepare_database(
        db_path, queue, connection_settings(cfg), history_rows=0, tasks=20, payload=b"p", enqueue_batch=20
    )
    started = time.perf_counter()
    with pytest.raises(
        DrainTimeoutError, match=r"within iteration_timeout_s=1: \d+ of 20 tasks acknowledged"
    ):
        (run_drain_threads if threads else run_drain)(drain_spec(cfg, db_path, backlog.first_id), queue)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"the drain took {elapsed:.1f} s to stop after a 1 s timeout"
