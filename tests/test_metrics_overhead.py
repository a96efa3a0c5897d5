"""Cheaper per-transaction metrics: a pool wait that cannot happen is counted, not timed, and the
recorded waits stay one per connection acquisition; metrics.level=minimal records none."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from qbench.kinds import ExecutorKind, MetricsLevel, PoolKind, ServiceKind
from qbench.run.executors import EXECUTORS, DrainResult, drain_spec
from qbench.run.executors.common import Ledger
from qbench.run.metrics import DrainStats
from qbench.run.queues.protocol import Claimed
from qbench.settings import Config

from .conftest import small_config
from .test_thread_executor import prepared

TASKS = 120


def _drain(tmp_path: Path, kind: ExecutorKind, level: MetricsLevel, **changes: object) -> DrainResult:
    base = small_config(tmp_path)
    settings: dict[str, object] = {"workers": 2, "tasks": TASKS, "history_rows": 0, **changes}
    cfg = small_config(
        tmp_path,
        executor=dataclasses.replace(base.executor, kind=kind),
        metrics=dataclasses.replace(base.metrics, level=level),
        **settings,
    )
    return _run(cfg, tmp_path)


def _run(cfg: Config, tmp_path: Path) -> DrainResult:
    db_path, queue, backlog = prepared(cfg, tmp_path)
    result = EXECUTORS[cfg.executor.kind](drain_spec(cfg, db_path, backlog.first_id), queue)
    assert result.stats.tasks_acked == cfg.tasks
    return result


@pytest.mark.parametrize("kind", [ExecutorKind.THREAD, ExecutorKind.ASYNC])
def test_a_connection_of_ones_own_is_a_pool_wait_of_exactly_zero_per_acquisition(
    tmp_path: Path, kind: ExecutorKind
) -> None:
    stats = _drain(tmp_path, kind, MetricsLevel.FULL).stats
    waits = list(stats.pool_wait_s)
    # every task was acknowledged by a transaction that took a connection: one wait each at least
    assert len(waits) >= TASKS
    assert set(waits) == {0.0}
    if kind is ExecutorKind.THREAD:  # one connection per transaction there
        assert len(waits) == stats.transactions
    # the other timings are still recorded per event
    assert len(stats.claim_latency_s) >= TASKS // 2 and len(stats.lock_wait_s) >= TASKS


@pytest.mark.parametrize("kind", [ExecutorKind.THREAD, ExecutorKind.ASYNC])
def test_minimal_level_records_no_timings(tmp_path: Path, kind: ExecutorKind) -> None:
    stats = _drain(tmp_path, kind, MetricsLevel.MINIMAL).stats
    assert stats.transactions >= TASKS
    for timings in (stats.pool_wait_s, stats.lock_wait_s, stats.claim_latency_s, stats.service_s):
        assert len(timings) == 0


@pytest.mark.parametrize("kind", [ExecutorKind.THREAD, ExecutorKind.ASYNC])
def test_a_pool_smaller_than_the_workers_still_times_the_waits(tmp_path: Path, kind: ExecutorKind) -> None:
    base = small_config(tmp_path)
    result = _drain(
        tmp_path,
        kind,
        MetricsLevel.FULL,
        workers=6,
        pool=dataclasses.replace(base.pool, kind=PoolKind.SHARED),
        service=dataclasses.replace(base.service, kind=ServiceKind.SLEEP, ms=1.0),
    )
    waits = list(result.stats.pool_wait_s)
    assert result.pool_connections == 1
    assert len(waits) >= TASKS
    # six workers on one connection, each holding it while others want it: some waited
    assert max(waits) > 0.0


def test_add_zero_pool_waits_appends_exact_zeros() -> None:
    stats = DrainStats.counters_only()
    stats.pool_wait_s.append(0.5)
    stats.add_zero_pool_waits(3)
    stats.add_zero_pool_waits(0)
    assert list(stats.pool_wait_s) == [0.5, 0.0, 0.0, 0.0]


def test_ledger_still_finds_a_task_handed_to_two_workers_at_once(tmp_path: Path) -> None:
    spec = drain_spec(small_config(tmp_path, tasks=4), tmp_path / "x.db", 10)
    stats = DrainStats.for_tasks(4)
    ledger = Ledger(spec, stats)
    now = time.time()
    ledger.hold([Claimed(11, 1, None)], token=1, claimed_at=now)
    ledger.hold([Claimed(11, 2, None)], token=2, claimed_at=now)  # lease 1 still running
    assert stats.double_handed == 1
    ledger.release(2, [11])
    ledger.hold([Claimed(11, 3, None)], token=3, claimed_at=now)  # released: not double-handed
    assert stats.double_handed == 1
    assert list(stats.claims) == [0, 3, 0, 0]
