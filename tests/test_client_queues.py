"""Client-level queues: the contract every shipped adapter and the example satisfy, the
checks that refuse what a queue cannot run, and whole jobs audited through each."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qbench.errors import ConfigError
from qbench.kinds import Delivery, ExecutorKind, QueueKind
from qbench.run.audit import audit_drain
from qbench.run.queues.bridge import ClientBridge, ClientSource, call
from qbench.run.queues.client import Capabilities, ClientQueue, QueueSettings, decode_id, encode_item
from qbench.run.queues.loading import ADAPTERS, check_queue, queue_settings, resolve
from qbench.run.queues.sql import BusyError, TxPhase, run_sync
from qbench.settings import Config, validate

from .conftest import ROOT, run_qbench
from .test_executor import run, section

EXAMPLE = "examples.fifo_queue:FifoQueue"
# every shipped adapter and the example, by the target that loads it
TARGETS = {str(kind): target for kind, (target, _) in ADAPTERS.items()} | {"example": EXAMPLE}


def settings(**changes: Any) -> QueueSettings:
    base = QueueSettings(
        journal_mode="wal",
        synchronous="normal",
        busy_timeout_ms=5000,
        wal_autocheckpoint_pages=1000,
        lease_s=0.2,
    )
    return dataclasses.replace(base, **changes)


def source(name: str, **changes: Any) -> ClientSource:
    return ClientSource(name, TARGETS[name], settings(**changes))


def drain_all(queue: ClientQueue) -> list[int]:
    """Every task id the queue still hands out, each acknowledged."""
    seen = []
    while (got := queue.get()) is not None:
        handle, item = got
        seen.append(decode_id(item))
        assert queue.ack(handle) in (True, False)
    return seen


@pytest.fixture(params=sorted(TARGETS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestContract:
    """What qbench relies on, for every shipped adapter and the example."""

    def test_enqueue_and_drain(self, name: str, tmp_path: Path) -> None:
        queue = source(name).open(tmp_path / "q.db")
        try:
            queue.put_many([encode_item(i, b"p" * 16) for i in range(1, 51)])
            got = queue.get()
            assert got is not None
            handle, item = got
            assert decode_id(item) == 1 and item[8:] == b"p" * 16  # FIFO, payload intact
            assert queue.ack(handle) is True
            assert sorted(drain_all(queue)) == list(range(2, 51))
            assert queue.get() is None
        finally:
            queue.close()

    def test_empty_queue(self, name: str, tmp_path: Path) -> None:
        queue = source(name).open(tmp_path / "q.db")
        try:
            assert queue.get() is None
        finally:
            queue.close()

    def test_ack_of_an_unknown_handle(self, name: str, tmp_path: Path) -> None:
        """A handle acknowledged already is one the queue no longer knows: acknowledging it again
        raises nothing and disturbs no other task (a fenced queue says it took no effect)."""
        queue = source(name).open(tmp_path / "q.db")
        try:
            queue.put_many([encode_item(i, b"") for i in (1, 2, 3)])
            got = queue.get()
            assert got is not None
            assert queue.ack(got[0]) is True
            again = queue.ack(got[0])
            assert isinstance(again, bool)
            if name == "example":
                assert again is False
            assert sorted(drain_all(queue)) == [2, 3]
        finally:
            queue.close()

    def test_a_killed_worker(self, name: str, tmp_path: Path) -> None:
        """A worker process takes a task and is SIGKILLed holding it; a fresh queue (the
        supervisor's respawn) then drains: the task comes back under at_least_once, and is
        gone under at_most_once, as the queue declares."""
        db = tmp_path / "q.db"
        src = source(name)
        caps = src.load().capabilities
        queue = src.open(db)
        try:
            queue.put_many([encode_item(i, b"") for i in range(1, 11)])
        finally:
            queue.close()
        ctx = multiprocessing.get_context("spawn")
        took = ctx.Queue()
        worker = ctx.Process(target=_take_one_and_wait, args=(src, db, took))
        worker.start()
        try:
            held = took.get(timeout=60)
        finally:
            os.kill(worker.pid or 0, signal.SIGKILL)
            worker.join(10)
        assert worker.exitcode == -signal.SIGKILL
        time.sleep(0.3)  # past lease_s=0.2
        queue = src.open(db)
        try:
            if caps.leases:
                queue.recover()  # type: ignore[attr-defined]
            seen = drain_all(queue)
        finally:
            queue.close()
        others = [i for i in range(1, 11) if i != held]
        if caps.delivery is Delivery.AT_LEAST_ONCE:
            assert sorted(seen) == sorted([*others, held])
        else:
            assert sorted(seen) == others

    def test_busy_storm_with_no_timeout(self, name: str, tmp_path: Path) -> None:
        """With busy.timeout_ms=0 and the write lock held elsewhere, a claim fails at once with
        SQLITE_BUSY (a BusyError of the claim to qbench) and loses nothing; it works once the
        lock is gone."""
        src = source(name, busy_timeout_ms=0)
        db = tmp_path / "q.db"
        queue = src.open(db)
        try:
            queue.put_many([encode_item(i, b"") for i in (1, 2)])
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            started = time.perf_counter()
            with pytest.raises(BusyError) as caught:
                call(TxPhase.CLAIM, queue.get)
            assert time.perf_counter() - started < 1.0
            assert caught.value.phase is TxPhase.CLAIM and caught.value.code_name == "busy"
            blocker.execute("ROLLBACK")
            blocker.close()
            assert sorted(drain_all(queue)) == [1, 2]
        finally:
            queue.close()


def _take_one_and_wait(src: ClientSource, db: Path, took: Any) -> None:
    queue = src.open(db)
    got = queue.get()
    assert got is not None
    took.put(decode_id(got[1]))
    time.sleep(60)


def test_bridge_presents_a_client_queue_as_transactions(tmp_path: Path) -> None:
    """Each claim is one get(), each ack one ack(); the connection passed is never used."""
    src = source("example")
    db = tmp_path / "q.db"
    queue = src.open(db)
    queue.put_many([encode_item(i, b"") for i in (7, 8)])
    queue.close()
    bridge = ClientBridge(src, db)
    assert bridge.open_for(3) == 3  # one per worker: the example does not share
    try:
        claimed = run_sync(None, bridge.claim(1, 0.0))  # type: ignore[arg-type]
        assert [c.id for c in claimed] == [7]
        assert run_sync(None, bridge.ack(1, [7], 0.0)) == [7]  # type: ignore[arg-type]
        assert run_sync(None, bridge.ack(1, [7], 0.0)) == []  # type: ignore[arg-type]
    finally:
        bridge.close_all()


def test_items_carry_their_task_id() -> None:
    assert decode_id(encode_item(2**40 + 3, b"xyz")) == 2**40 + 3
    with pytest.raises(ValueError, match="8-byte id"):
        decode_id(b"abc")


def test_expected_loss_is_a_finding_not_a_failure() -> None:
    claims, executions, acks = [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0]
    strict = audit_drain(claims, executions, acks)
    assert not strict.ok and strict.tasks_lost == 2
    allowed = audit_drain(claims, executions, acks, loss_allowed=True)
    # the claimed task is an expected loss; the never-claimed one still fails the audit
    assert allowed.tasks_lost_expected == 1 and not allowed.ok
    assert "1 of 4 tasks lost" in allowed.message
    assert audit_drain([1, 1], [1, 0], [1, 0], loss_allowed=True).ok


# -- refused before anything runs ----------------------------------------------------------


def cfg(**changes: Any) -> Config:
    base = Config()
    nested: dict[str, Any] = {}
    for key, value in changes.items():
        section_name, _, field = key.partition("__")
        if field:
            nested.setdefault(section_name, {})[field] = value
        else:
            nested[key] = value
    kwargs = {
        k: dataclasses.replace(getattr(base, k), **v) if isinstance(v, dict) else v for k, v in nested.items()
    }
    return validate(dataclasses.replace(base, **kwargs))


THREAD = {"executor__kind": ExecutorKind.THREAD}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"queue__kind": QueueKind.HUEY, "queue__delivery": Delivery.AT_MOST_ONCE}, "executor='async'"),
        (
            {**THREAD, "queue__kind": QueueKind.LITEQUEUE, "journal__mode": "delete"},
            "journal.mode='delete' is not allowed: queue=litequeue runs only with journal.mode=wal",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.HUEY, "queue__delivery": "at_most_once", "claim__batch": 4},
            "claim.batch=4 is not allowed: queue=huey does not honour claim.batch",
        ),
        (
            {
                **THREAD,
                "queue__kind": QueueKind.HUEY,
                "queue__delivery": "at_most_once",
                "claim__tx": "immediate",
            },
            "claim.tx='immediate' is not allowed: queue=huey does not honour claim.tx",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.HUEY},
            "queue.delivery='at_least_once' is not allowed: queue=huey",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.PERSIST_QUEUE, "queue__lease_s": 1.0},
            "queue=persist_queue does not honour queue.lease_s",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.CUSTOM, "queue__target": "nosuch.module:X"},
            "module nosuch.module does not import",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.CUSTOM, "queue__target": "examples.fifo_queue:Missing"},
            "module examples.fifo_queue has no Missing",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.CUSTOM, "queue__target": "examples.fifo_queue:_SCHEMA"},
            "expected a class, found str",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.CUSTOM, "queue__target": "qbench.run.audit:AuditResult"},
            "the client level lacks open, put_many, get, ack, close",
        ),
        (
            {**THREAD, "queue__kind": QueueKind.SQLITE, "queue__delivery": "at_most_once"},
            "queue=sqlite declares at_least_once",
        ),
    ],
)
def test_what_a_queue_cannot_run_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_queue(cfg(**changes))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ADAPTERS, QueueKind.HUEY, ("qbench_no_such_adapter:Huey", "qbench_no_such_adapter"))
    with pytest.raises(
        ConfigError, match=r"needs the qbench_no_such_adapter library: pip install 'qbench\[queues\]'"
    ):
        resolve(cfg(**THREAD, queue__kind=QueueKind.HUEY, queue__delivery="at_most_once"))


def test_custom_target_is_required_and_only_for_custom() -> None:
    with pytest.raises(ConfigError, match="required with queue=custom"):
        cfg(queue__kind=QueueKind.CUSTOM)
    with pytest.raises(ConfigError, match="used only with queue=custom"):
        cfg(queue__target=EXAMPLE)
    with pytest.raises(ConfigError, match=r"expected package\.module:ClassName"):
        cfg(queue__kind=QueueKind.CUSTOM, queue__target="not a target")


def test_open_gets_what_qbench_was_asked_for() -> None:
    got = queue_settings(cfg(**THREAD, busy__timeout_ms=250, synchronous="full", queue__lease_s=3.0))
    assert (got.journal_mode, got.synchronous, got.busy_timeout_ms, got.lease_s) == ("wal", "full", 250, 3.0)
    assert got.extra["workers"] == 1
    app = queue_settings(cfg(**THREAD, busy__policy="app"))
    assert app.busy_timeout_ms == 0  # busy.policy=app: the library's own wait is off


def test_capabilities_are_declared_by_every_adapter() -> None:
    for target in TARGETS.values():
        caps = ClientSource("x", target, settings()).load().capabilities
        assert isinstance(caps, Capabilities)


# -- whole jobs ------------------------------------------------------------------------------

DELIVERY = {"huey": "at_most_once"}


@pytest.mark.parametrize("kind", ["huey", "litequeue", "persist_queue", "custom"])
def test_a_job_through_each_queue_is_audited(tmp_path: Path, kind: str) -> None:
    queue = section(
        "queue",
        kind=QueueKind(kind),
        delivery=Delivery(DELIVERY.get(kind, "at_least_once")),
        target=EXAMPLE if kind == "custom" else None,
    )
    df = run(tmp_path, executor=section("executor", kind=ExecutorKind.THREAD), workers=3, queue=queue)
    assert df["audit_ok"].all() and df["integrity_ok"].all()
    assert (df["tasks_completed"] == 200).all() and (df["tasks_lost"] == 0).all()
    assert (df["queue_level"] == "client").all()
    assert (df["queue_journal_mode_in_effect"] == "wal").all()
    assert (df["queue_synchronous_in_effect"] == 1).all()  # normal, set or kept by each
    assert (df["queue_busy_timeout_ms_in_effect"] == 5000).all()


def test_huey_honours_the_journal_and_synchronous_asked_for(tmp_path: Path) -> None:
    queue = section("queue", kind=QueueKind.HUEY, delivery=Delivery.AT_MOST_ONCE)
    journal = section("journal", mode="delete")
    df = run(
        tmp_path,
        executor=section("executor", kind=ExecutorKind.THREAD),
        queue=queue,
        journal=journal,
        synchronous="full",
        busy=section("busy", timeout_ms=1234),
    )
    assert df["queue_journal_mode_in_effect"].tolist() == ["delete"]
    assert df["queue_synchronous_in_effect"].tolist() == [2]
    assert df["queue_busy_timeout_ms_in_effect"].tolist() == [1234]


def test_a_sqlite_job_records_its_own_settings(tmp_path: Path) -> None:
    df = run(tmp_path)
    assert df["queue_level"].tolist() == ["statement"]
    assert df["queue_library"].tolist() == ["qbench reference queue"]
    assert df["tasks_lost_expected"].tolist() == [0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "extra", "lost"),
    [("huey", [], True), ("custom", [f"queue.target={EXAMPLE}", "queue.lease_s=1"], False)],
)
def test_killed_workers_under_each_delivery(tmp_path: Path, kind: str, extra: list[str], lost: bool) -> None:
    """executor=process with faults.kill: at_most_once loses what the killed processes held,
    recorded as a finding with the job still ok; at_least_once loses nothing."""
    args = [
        f"queue={kind}",
        "executor=process",
        "workers=3",
        "faults.kill=2",
        "tasks=600",
        "iterations=1",
        "warmup=0",
        "history_rows=0",
        "service.kind=sleep",
        "service.ms=2",
        "ceiling.enabled=false",
        f"hydra.run.dir={tmp_path / 'job'}",
        *extra,
    ]
    done = run_qbench(args, ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    df = pd.read_parquet(tmp_path / "job" / "metrics.parquet")
    assert df["faults_injected"].tolist() == [2] and df["audit_ok"].all()
    if lost:
        assert df["tasks_lost"].iloc[0] >= 1
        assert (df["tasks_lost"] == df["tasks_lost_expected"]).all()
    else:
        assert df["tasks_lost"].tolist() == [0] and df["tasks_redelivered"].iloc[0] >= 1


def test_the_command_line_refuses_in_one_line(tmp_path: Path) -> None:
    done = run_qbench(
        ["queue=litequeue", "executor=thread", "journal=delete", f"hydra.run.dir={tmp_path / 'x'}"], ROOT
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "qbench: error: journal.mode='delete' is not allowed: queue=litequeue runs only with journal.mode=wal"
    )
    assert not (tmp_path / "x").exists()


def test_the_report_says_what_an_at_most_once_queue_lost() -> None:
    from qbench.report.findings import _delivery_findings

    summary = pd.DataFrame(
        {
            "config_id": ["a", "b"],
            "host": ["h", "h"],
            "workers": [4, 4],
            "queue_kind": ["huey", "litequeue"],
            "iterations": [3, 3],
            "tasks_lost_expected_total": [5, 0],
            "faults_injected_total": [6, 6],
        }
    )
    found = _delivery_findings(summary)
    assert len(found) == 2
    assert "queue_kind=huey" in found[0] and "lost 5 tasks with 6 killed worker processes" in found[0]
    assert "not a failure" in found[0]
    assert "reference statements" in found[1]
    assert _delivery_findings(summary.assign(queue_kind="sqlite", tasks_lost_expected_total=0)) == []


def test_a_client_queue_may_deliver_twice_but_never_lose() -> None:
    """At least once without a fence (persist-queue, litequeue 0.9): a task acknowledged by two
    workers is counted, not a failure; a lost one still fails."""
    claims, executions, acks = [2, 1], [2, 1], [2, 1]
    assert not audit_drain(claims, executions, acks).ok
    allowed = audit_drain(claims, executions, acks, duplicates_allowed=True)
    assert allowed.ok and allowed.tasks_acked_twice == 1 and allowed.tasks_duplicated == 1
    assert not audit_drain([2, 1], [2, 1], [2, 0], duplicates_allowed=True).ok


def test_the_report_says_what_a_queue_delivered_twice() -> None:
    from qbench.report.findings import _delivery_findings

    summary = pd.DataFrame(
        {
            "config_id": ["a"],
            "host": ["h"],
            "workers": [4],
            "queue_kind": ["persist_queue"],
            "iterations": [2],
            "tasks_duplicated_total": [7],
        }
    )
    found = _delivery_findings(summary)
    assert "handed 7 tasks to a second worker" in found[0] and "idempotent" in found[0]


def test_history_runs_through_the_queue_once_then_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first iteration puts the history through the library; later ones start from a copy
    of the file it left; the copy is gone with the job."""
    import qbench.run.database as database

    built: list[int] = []
    real = database._client_history

    def counted(*args: Any) -> None:
        built.append(1)
        real(*args)

    monkeypatch.setattr(database, "_client_history", counted)
    queue = section("queue", kind=QueueKind.LITEQUEUE)
    df = run(
        tmp_path,
        executor=section("executor", kind=ExecutorKind.THREAD),
        queue=queue,
        iterations=3,
        history_rows=300,
    )
    assert df["audit_ok"].all() and len(df) == 3
    assert built == [1]
    assert not list(tmp_path.rglob("*-history"))


def test_a_task_acknowledged_in_two_processes_counts_once_toward_completion() -> None:
    """Each worker process has its own SharedCount over the same cells and flags: the first to
    acknowledge a task counts it, a second process's ack of it does not."""
    from qbench.run.executors.process_shared import Shared, SharedCount

    ctx = multiprocessing.get_context("spawn")
    shared = Shared.create(ctx, 2, tasks=3)
    a = SharedCount(shared.acks, 0, shared.first, shared.first_lock)
    b = SharedCount(shared.acks, 1, shared.first, shared.first_lock)
    assert a.first_anywhere(1) is True
    assert b.first_anywhere(1) is False
    assert b.first_anywhere(2) is True
    assert SharedCount(shared.acks, 0).first_anywhere(1) is True  # no flags: the reference queue
    assert Shared.create(ctx, 2).first is None
