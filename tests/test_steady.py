"""Open-loop workloads: the arrival schedule, the producer process, steady and burst jobs end to end,
coordinated omission corrected, and ``tasks`` refused where it means nothing."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbench.app.preflight import preflight
from qbench.app.schema import register_configs
from qbench.errors import UsageError
from qbench.kinds import Arrivals, ExecutorKind, WorkloadKind
from qbench.run.executors import run_drain
from qbench.run.executors.protocol import DrainResult, DrainSpec, ProgressSink
from qbench.run.job import run_job
from qbench.run.metrics import ResourceMonitor
from qbench.run.pragmas import connection_settings
from qbench.run.queues import make_queue
from qbench.run.queues.protocol import Claimed, QueueUnderTest
from qbench.run.queues.sql import Transaction
from qbench.run.row import open_loop_columns, timing_columns
from qbench.run.workloads import Bench, SteadyWorkload
from qbench.run.workloads.arrivals import ArrivalParams, arrival_schedule, burst_windows, mean_rate
from qbench.run.workloads.open_loop import OpenLoop, burst_drains, depth_quantile, queue_depth
from qbench.settings import Config

from .conftest import run_qbench, small_config

# a count off by more than this many Poisson standard deviations fails: about 1 run in 3.5 million
SDS = 5.0


def _poisson_ok(count: int, expected: float) -> bool:
    return abs(count - expected) <= SDS * math.sqrt(expected)


# -- the arrival schedule ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_poisson_count_and_gaps_are_those_of_a_poisson_process(seed: int) -> None:
    rate, duration = 2000.0, 5.0
    schedule = arrival_schedule(ArrivalParams(rate, Arrivals.POISSON, duration, seed))
    assert _poisson_ok(len(schedule), rate * duration)
    gaps = np.diff(schedule)
    n = len(gaps)
    # exponential gaps: mean 1/rate and coefficient of variation 1, each within 5 of its standard errors
    assert abs(gaps.mean() * rate - 1.0) <= SDS / math.sqrt(n)
    cv = gaps.std() / gaps.mean()
    assert abs(cv - 1.0) <= SDS * math.sqrt(
        2.0 / n
    )  # the CV's standard error for exponential gaps is ~1/sqrt(n)


def test_uniform_arrivals_are_evenly_spaced_at_the_rate() -> None:
    schedule = arrival_schedule(ArrivalParams(400.0, Arrivals.UNIFORM, 2.5, 7))
    assert len(schedule) == 1000
    assert schedule[0] == 0.0
    np.testing.assert_allclose(np.diff(schedule), 1 / 400.0, rtol=1e-9)


def test_burst_windows_get_the_burst_rate_and_the_rest_the_base_rate() -> None:
    params = ArrivalParams(
        1000.0, Arrivals.POISSON, 6.0, 3, burst_rate=8000.0, burst_every_s=2.0, burst_s=0.5
    )
    schedule = arrival_schedule(params)
    windows = burst_windows(params)
    assert windows == [(0.0, 0.5), (2.0, 2.5), (4.0, 4.5)]
    inside = np.zeros(len(schedule), dtype=bool)
    for start, end in windows:
        inside |= (schedule >= start) & (schedule < end)
    assert _poisson_ok(int(inside.sum()), 8000.0 * 1.5)
    assert _poisson_ok(int((~inside).sum()), 1000.0 * 4.5)
    assert mean_rate(params) == pytest.approx((8000 * 1.5 + 1000 * 4.5) / 6.0)
    # uniform: the spacing follows the rate it is in
    uniform = arrival_schedule(dataclasses.replace(params, arrivals=Arrivals.UNIFORM))
    gaps = np.diff(uniform)
    in_burst = (uniform[1:] > 2.0) & (uniform[1:] < 2.5)
    np.testing.assert_allclose(gaps[in_burst], 1 / 8000.0, rtol=1e-6)
    between = (uniform[1:] > 2.6) & (uniform[1:] < 3.9)
    np.testing.assert_allclose(gaps[between], 1 / 1000.0, rtol=1e-6)


def test_the_last_burst_is_cut_at_the_end_of_the_window() -> None:
    params = ArrivalParams(10.0, Arrivals.UNIFORM, 2.2, 0, burst_rate=100.0, burst_every_s=1.0, burst_s=0.5)
    assert burst_windows(params)[-1] == (2.0, 2.2)
    assert mean_rate(params) == pytest.approx((100 * 1.2 + 10 * 1.0) / 2.2)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    params = ArrivalParams(500.0, Arrivals.POISSON, 2.0, 11)
    np.testing.assert_array_equal(arrival_schedule(params), arrival_schedule(params))
    other = arrival_schedule(dataclasses.replace(params, seed=12))
    first = arrival_schedule(params)
    assert len(other) != len(first) or not np.array_equal(other, first)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 5000.0),
    duration=st.floats(0.01, 3.0),
    arrivals=st.sampled_from(list(Arrivals)),
    seed=st.integers(0, 2**31 - 1),
    burst=st.one_of(
        st.none(), st.tuples(st.floats(0.5, 20000.0), st.floats(0.02, 2.0), st.floats(0.01, 0.99))
    ),
)
def test_a_schedule_is_sorted_and_inside_its_window(
    rate: float, duration: float, arrivals: Arrivals, seed: int, burst: tuple[float, float, float] | None
) -> None:
    params = ArrivalParams(rate, arrivals, duration, seed)
    if burst is not None:
        burst_rate, every, share = burst
        params = dataclasses.replace(
            params, burst_rate=burst_rate, burst_every_s=every, burst_s=every * share
        )
    schedule = arrival_schedule(params)
    assert schedule.dtype == np.float64
    assert np.all(np.diff(schedule) >= 0)
    assert schedule.size == 0 or (schedule[0] >= 0 and schedule[-1] < duration)


# -- queue depth and burst drains from per-task times ---------------------------------------------


def test_queue_depth_is_exact_and_time_weighted() -> None:
    enqueued = np.array([0.0, 0.0, 1.0, 1.0])
    acked = np.array([0.5, 3.0, 1.5, 2.0])
    times, depth = queue_depth(enqueued, acked)
    assert depth.max() == 3  # at 1.0 .. 1.5: tasks 1, 2, 3
    # depth over [0, 3]: 2 (0.5 s), 1 (0.5 s), 3 (0.5 s), 2 (0.5 s), 1 (1 s)
    # at or below 1 for half the time, 2 for 5/6 of it, 3 always
    assert depth_quantile(times, depth, 0.5) == 1
    assert depth_quantile(times, depth, 0.6) == 2
    assert depth_quantile(times, depth, 0.99) == 3


def test_a_burst_drains_when_the_depth_is_back_to_its_level_at_the_burst_start() -> None:
    # depth 1 before the burst at [1, 2); 3 more come in it; back to 1 at 2.75
    enqueued = np.array([0.5, 1.1, 1.2, 1.3])
    acked = np.array([5.0, 2.5, 2.75, 2.6])
    loop = OpenLoop(
        1.0,
        4.0,
        enqueued,
        enqueued,
        acked,
        acked - enqueued,
        acked - enqueued,
        [(1.0, 2.0), (3.0, 3.5)],
        0,
        0,
    )
    times, depth = queue_depth(enqueued, acked)
    assert burst_drains(loop, times, depth) == pytest.approx([0.75, 0.0])


# -- jobs end to end ----------------------------------------------------------------------------


def _open_loop_config(tmp_path: Path, kind: WorkloadKind, executor: ExecutorKind, **workload: Any) -> Config:
    cfg = small_config(tmp_path)
    return small_config(
        tmp_path,
        workload=dataclasses.replace(cfg.workload, kind=kind, **workload),
        executor=dataclasses.replace(cfg.executor, kind=executor),
        iteration_timeout_s=120.0,
    )


OPEN_LOOP_NOT_NULL = [
    "offered_rate_tps",
    "arrivals",
    "achieved_rate_tps",
    "producer_lag_p99_ms",
    "producer_lag_max_ms",
    "arrivals_late",
    "queue_depth_max",
    "queue_depth_p99",
    "wait_p50_ms",
    "wait_p95_ms",
    "wait_p99_ms",
    "e2e_latency_p99_ms",
]


@pytest.mark.parametrize("executor", [ExecutorKind.ASYNC, ExecutorKind.THREAD])
def test_a_steady_job_audits_clean_and_offers_its_rate(tmp_path: Path, executor: ExecutorKind) -> None:
    cfg = _open_loop_config(tmp_path, WorkloadKind.STEADY, executor, rate=500.0, duration_s=1.0)
    outcome = run_job(cfg, tmp_path)
    assert outcome.ok, outcome.reason
    [row] = pd.read_parquet(tmp_path / "metrics.parquet").to_dict("records")
    assert row["audit_ok"] and row["tasks_lost"] == 0 and row["tasks_duplicated"] == 0
    assert row["tasks_enqueued"] == row["arrivals"] == row["tasks_completed"]
    assert _poisson_ok(row["arrivals"], 500.0)
    assert row["offered_rate_tps"] == 500.0
    for column in OPEN_LOOP_NOT_NULL:
        assert row[column] is not None and not pd.isna(row[column]), column
    # achieved = arrivals / max(duration_s, last enqueue): at most the schedule's own rate; a wide
    # lower bound, as the machine is shared (the lag columns say how late the producer was)
    assert 0.5 * row["offered_rate_tps"] <= row["achieved_rate_tps"] <= row["arrivals"] / 1.0 + 1e-9
    assert pd.isna(row["burst_drain_max_s"]) and pd.isna(row["burst_drain_p50_s"])
    assert row["wait_p99_ms"] <= row["e2e_latency_p99_ms"]


def test_a_burst_job_reports_how_long_each_burst_took_to_drain(tmp_path: Path) -> None:
    cfg = _open_loop_config(
        tmp_path,
        WorkloadKind.BURST,
        ExecutorKind.ASYNC,
        rate=200.0,
        duration_s=1.0,
        burst_rate=3000.0,
        burst_every_s=0.5,
        burst_s=0.1,
    )
    outcome = run_job(cfg, tmp_path)
    assert outcome.ok, outcome.reason
    [row] = pd.read_parquet(tmp_path / "metrics.parquet").to_dict("records")
    assert row["audit_ok"] and row["tasks_enqueued"] == row["arrivals"]
    assert _poisson_ok(row["arrivals"], 200.0 * 0.8 + 3000.0 * 0.2)
    assert row["offered_rate_tps"] == pytest.approx(200.0 * 0.8 + 3000.0 * 0.2)
    assert row["burst_drain_max_s"] >= row["burst_drain_p50_s"] >= 0.0


def test_a_drain_job_has_no_open_loop_columns(tmp_path: Path) -> None:
    outcome = run_job(small_config(tmp_path, tasks=50), tmp_path)
    assert outcome.ok, outcome.reason
    [row] = pd.read_parquet(tmp_path / "metrics.parquet").to_dict("records")
    for column in [*OPEN_LOOP_NOT_NULL[:-1], "burst_drain_max_s"]:
        assert row[column] is None or pd.isna(row[column]), column


# -- coordinated omission -----------------------------------------------------------------------

STALL_AT_S, STALL_S = 0.3, 0.2


class _StallingQueue:
    """The queue under test, except that the first claim after ``STALL_AT_S`` sleeps ``STALL_S``
    before it runs: the only worker (workers=1) stalls, the producer (its own process) does not."""

    def __init__(self, inner: QueueUnderTest, clock: dict[str, float]) -> None:
        self.inner = inner
        self.clock = clock

    def claim(self, token: int, now: float) -> Transaction[list[Claimed]]:
        t0 = self.clock.get("t0")
        if t0 is not None and "stall_start" not in self.clock and time.perf_counter() - t0 >= STALL_AT_S:
            self.clock["stall_start"] = time.perf_counter() - t0
            time.sleep(STALL_S)  # nothing is claimed or acknowledged meanwhile
            self.clock["stall_end"] = time.perf_counter() - t0
        return (yield from self.inner.claim(token, now))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _stalling_executor(clock: dict[str, float]) -> Any:
    def execute(
        spec: DrainSpec,
        queue: QueueUnderTest,
        *,
        on_progress: ProgressSink | None = None,
        monitor: ResourceMonitor | None = None,
    ) -> DrainResult:
        release = spec.on_start
        assert release is not None

        def on_start(t0: float) -> None:
            clock["t0"] = t0
            release(t0)

        spec = dataclasses.replace(spec, on_start=on_start)
        stalling = cast(QueueUnderTest, _StallingQueue(queue, clock))
        return run_drain(spec, stalling, on_progress=on_progress, monitor=monitor)

    return execute


def test_a_consumer_stall_is_charged_to_every_task_that_arrived_during_it(tmp_path: Path) -> None:
    cfg = _open_loop_config(tmp_path, WorkloadKind.STEADY, ExecutorKind.ASYNC, rate=500.0, duration_s=1.0)
    assert cfg.workers == 1
    clock: dict[str, float] = {}
    queue = make_queue(cfg)
    bench = Bench(cfg, tmp_path / "co.db", queue, connection_settings(cfg), _stalling_executor(clock), b"x")
    workload = SteadyWorkload()
    backlog = workload.prepare(bench)
    driven = workload.drive(bench, backlog)
    loop = driven.open_loop
    assert loop is not None
    start, end = clock["stall_start"], clock["stall_end"]
    assert end - start >= STALL_S
    during = (loop.intended_s >= start) & (loop.intended_s < end)
    assert during.sum() >= 20  # about 100 at 500 tasks/s: the check below has something to hold
    # each of them waited for the stall's end at least: from its intended arrival, not from a claim
    owed = end - loop.intended_s[during]
    assert np.all(loop.e2e_s[during] >= owed - 1e-3)
    assert np.all(loop.wait_s[during] >= owed - 1e-3)
    # the p99 shows it: at least the p99 of what the stall alone owes every task
    lower = np.zeros(loop.intended_s.size)
    lower[during] = owed
    p99 = timing_columns(driven.drain.stats, loop.e2e_s)["e2e_latency_p99_ms"]
    assert p99 >= np.percentile(lower, 99) * 1000 - 1.0
    assert p99 >= 0.5 * STALL_S * 1000
    assert open_loop_columns(loop)["wait_p99_ms"] >= 0.5 * STALL_S * 1000


# -- tasks means nothing for an open loop ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["workload=steady", "tasks=100"],
        ["workload=burst", "tasks=100"],
        ["-m", "workload=steady", "tasks=100,200"],
        ["-m", "workload=drain,steady", "tasks=100"],
    ],
)
def test_tasks_with_an_open_loop_workload_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    register_configs()
    with pytest.raises(UsageError) as info:
        preflight(args)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("tasks=100 is not allowed")
    assert "workload.rate x workload.duration_s" in message
    assert list(tmp_path.iterdir()) == []
    # without tasks it passes, and a drain may set it
    assert preflight(["workload=steady", "workload.rate=100"]) == 1
    assert preflight(["workload=drain", "tasks=100"]) == 1


@pytest.mark.slow  # runs python -m qbench in a subprocess
def test_tasks_with_steady_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    proc = run_qbench(["-m", "workload=steady", "tasks=100,200"], tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "qbench: error: tasks=100 is not allowed: not used with workload=steady: its tasks are the"
        " arrivals, workload.rate x workload.duration_s (set those instead)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_drain_leaves_no_producer_running(tmp_path: Path) -> None:
    import multiprocessing

    cfg = _open_loop_config(tmp_path, WorkloadKind.STEADY, ExecutorKind.ASYNC, rate=100.0, duration_s=30.0)

    def interrupted(spec: DrainSpec, queue: QueueUnderTest, **_: Any) -> DrainResult:
        assert spec.on_start is not None
        spec.on_start(time.perf_counter())
        raise KeyboardInterrupt

    bench = Bench(cfg, tmp_path / "ki.db", make_queue(cfg), connection_settings(cfg), interrupted, b"x")
    workload = SteadyWorkload()
    backlog = workload.prepare(bench)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        workload.drive(bench, backlog)
    assert multiprocessing.active_children() == []
    assert time.monotonic() - started < 30.0  # stopped, not left to enqueue its 30 s of arrivals
