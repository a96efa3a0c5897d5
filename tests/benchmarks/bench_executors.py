"""Executor overhead, measured as ratios in one run (not a test: run it by hand).

    python tests/benchmarks/bench_executors.py [--tasks 5000] [--reps 7] [--pairs 20]

WAL, synchronous NORMAL, autocommit claims, 1 worker, noop tasks, the default history rows.
Prints, each measured in this run:
  * per case (executor x claim batch): the ceiling (the same claim and ack statements in a
    tight loop on one plain sqlite3 connection, ``qbench.run.ceiling``), the executor's
    throughput on a freshly prepared backlog (acknowledged tasks / seconds from the workers'
    start to the last first ack: the ``throughput_tps`` column), and their ratio (the
    ``harness_efficiency`` column). Ceiling and drain alternate, order flipping every rep, and
    the figure is the median of the per-rep ratios, so drift on a shared machine cancels.
    Targets: async batch 1 >= 0.35, async batch 16 >= 0.5, thread batch 1 >= 0.7,
    process batch 1 >= 0.85 (when that executor is registered);
  * for executor=async, the same ratio for the floor of any aiosqlite executor: one coroutine,
    one connection, one aiosqlite call per claim (the ack of a batch and the claim of the next
    in one call, as the executor makes it) and no bookkeeping at all. The async executor cannot
    beat it: when the floor is under a target, aiosqlite's per-call cost on this machine, not
    qbench, puts the target out of reach;
  * per executor, throughput with metrics.level=full (every timing, the RSS/WAL sampler) over
    throughput with metrics.level=minimal: the median of paired ratios, order alternating
    (target: within 1%, i.e. >= 0.99).
Set-up (database, history rows, backlog) is never timed. The load averages at the start and
the end are printed, with a warning when other work shared the machine (the figures move with
it). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qbench.kinds import ExecutorKind, MetricsLevel, TxMode
from qbench.run.ceiling import measure_ceiling
from qbench.run.database import prepare_database, remove_database
from qbench.run.executors import EXECUTORS, drain_spec
from qbench.run.executors.pool import ConnectionPool, on_thread
from qbench.run.metrics import ResourceMonitor
from qbench.run.pragmas import connection_settings
from qbench.run.queues import make_queue
from qbench.run.queues.sql import BusyError, run_or_roll_back, run_then
from qbench.settings import Config, validate

# (executor, claim batch, target ratio)
CASES = (
    (ExecutorKind.ASYNC, 1, 0.35),
    (ExecutorKind.ASYNC, 16, 0.5),
    (ExecutorKind.THREAD, 1, 0.7),
    (ExecutorKind.PROCESS, 1, 0.85),
)
OVERHEAD_TARGET = 0.99
# a load average above this at the end (the run itself keeps about one CPU busy): other work
# shared the machine during the run
LOADED = 2.0
PAYLOAD = b"x" * 128


def config(db_dir: Path, executor: ExecutorKind, tasks: int, batch: int, level: MetricsLevel) -> Config:
    c = Config()
    return validate(
        dataclasses.replace(
            c,
            workers=1,
            tasks=tasks,
            executor=dataclasses.replace(c.executor, kind=executor),
            claim=dataclasses.replace(c.claim, tx=TxMode.AUTOCOMMIT, batch=batch),
            metrics=dataclasses.replace(c.metrics, level=level),
            db=dataclasses.replace(c.db, dir=str(db_dir)),
        )
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as the run's conditions."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def ceiling_tps(cfg: Config, db_path: Path) -> float:
    return measure_ceiling(
        db_path,
        make_queue(cfg),
        connection_settings(cfg),
        tasks=cfg.tasks,
        history_rows=cfg.history_rows,
        payload=PAYLOAD,
        enqueue_batch=cfg.queue.enqueue_batch,
    ).tps


def drain_tps(cfg: Config, db_path: Path) -> float:
    """One drain as a job's iteration runs it (its monitor included); tasks per second."""
    queue = make_queue(cfg)
    first_id = prepared(cfg, db_path)
    full = cfg.metrics.level is MetricsLevel.FULL
    monitor = ResourceMonitor(db_path, cfg.metrics.sample_interval_ms / 1000.0 if full else None)
    try:
        result = EXECUTORS[cfg.executor.kind](drain_spec(cfg, db_path, first_id), queue, monitor=monitor)
    finally:
        remove_database(db_path)
    if result.stats.tasks_acked != cfg.tasks:
        raise SystemExit(f"{cfg.executor.kind}: {result.stats.tasks_acked} of {cfg.tasks} tasks acknowledged")
    return result.stats.tasks_acked / result.duration_s


def prepared(cfg: Config, db_path: Path) -> int:
    """A fresh backlog in ``db_path`` (set-up, never timed); the first task's id."""
    backlog = prepare_database(
        db_path,
        make_queue(cfg),
        connection_settings(cfg),
        history_rows=cfg.history_rows,
        tasks=cfg.tasks,
        payload=PAYLOAD,
        enqueue_batch=cfg.queue.enqueue_batch,
    )
    return backlog.first_id


async def _floor_loop(cfg: Config, db_path: Path) -> float:
    queue = make_queue(cfg)
    pool = await ConnectionPool.open(str(db_path), 1, connection_settings(cfg))
    conn = pool.acquire_now()
    assert conn is not None
    try:
        token, done = 1, 0
        started = time.perf_counter()
        claimed = await on_thread(conn, partial(run_or_roll_back, tx=queue.claim(token, time.time())))
        while claimed:
            ids = [task.id for task in claimed]
            now = time.time()
            trip = partial(run_then, first=queue.ack(token, ids, now), then=queue.claim(token + 1, now))
            acked, outcome, _ = await on_thread(conn, trip)
            if isinstance(outcome, BusyError):  # one connection alone on the file: never
                raise SystemExit(f"aiosqlite floor: {outcome}")
            claimed = outcome
            token += 1
            done += len(acked)
        elapsed = time.perf_counter() - started
    finally:
        pool.release(conn)
        await pool.close()
    if done != cfg.tasks:
        raise SystemExit(f"aiosqlite floor: {done} of {cfg.tasks} tasks acknowledged")
    return done / elapsed


def floor_tps(cfg: Config, db_path: Path) -> float:
    """The floor of any aiosqlite executor: tasks per second of the bare loop (see the docstring)."""
    prepared(cfg, db_path)
    try:
        return asyncio.run(_floor_loop(cfg, db_path))
    finally:
        remove_database(db_path)


def measure(cfg: Config, db_path: Path, reps: int, floor: bool) -> dict[str, list[float]]:
    """Ceiling, drain (and the aiosqlite floor) per rep, in an order that rotates every rep."""
    runs = {"ceiling": ceiling_tps, "drain": drain_tps} | ({"floor": floor_tps} if floor else {})
    names = list(runs)
    out: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            out[name].append(runs[name](cfg, db_path))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7, help="ceiling/drain pairs per case")
    parser.add_argument("--pairs", type=int, default=20, help="full/minimal drain pairs per executor")
    parser.add_argument("--executors", default="", help="comma-separated executors (default: all registered)")
    args = parser.parse_args()
    chosen = {ExecutorKind(e) for e in args.executors.split(",") if e} or set(EXECUTORS)
    cases = [case for case in CASES if case[0] in chosen and case[0] in EXECUTORS]
    work = Path(tempfile.mkdtemp(prefix="qbench-bench-"))
    db_path = work / "bench.db"

    failed = False
    print(f"WAL/NORMAL, autocommit claims, 1 worker, noop, {args.tasks} tasks; medians of per-rep ratios")
    print(f"load average at the start: {load_average()}")
    for executor, batch, target in cases:
        cfg = config(work, executor, args.tasks, batch, MetricsLevel.FULL)
        drain_tps(cfg, db_path)  # warm-up: imports, caches, the file system
        runs = measure(cfg, db_path, args.reps, floor=executor is ExecutorKind.ASYNC)
        ratios = [d / c for d, c in zip(runs["drain"], runs["ceiling"], strict=True)]
        ratio = statistics.median(ratios)
        ok = ratio >= target
        failed |= not ok
        print(
            f"{executor:>7} batch {batch:>2}: ceiling {statistics.median(runs['ceiling']):>7,.0f} tasks/s, "
            f"throughput {statistics.median(runs['drain']):>7,.0f} tasks/s, ratio {ratio:.3f} "
            f"(range {min(ratios):.3f}-{max(ratios):.3f}; target >= {target}) {'PASS' if ok else 'FAIL'}",
            flush=True,
        )
        if "floor" in runs:
            floors = [f / c for f, c in zip(runs["floor"], runs["ceiling"], strict=True)]
            print(
                f"{'':>7}          aiosqlite floor (one call per claim, no bookkeeping): "
                f"{statistics.median(runs['floor']):>7,.0f} tasks/s, ratio {statistics.median(floors):.3f} "
                f"(range {min(floors):.3f}-{max(floors):.3f})",
                flush=True,
            )
    for executor in sorted({e for e, _, _ in cases}):
        levels = {level: config(work, executor, args.tasks, 1, level) for level in MetricsLevel}
        paired: list[float] = []
        for rep in range(args.pairs):
            order = (MetricsLevel.FULL, MetricsLevel.MINIMAL)
            tps = {level: drain_tps(levels[level], db_path) for level in (order if rep % 2 else order[::-1])}
            paired.append(tps[MetricsLevel.FULL] / tps[MetricsLevel.MINIMAL])
        if not paired:
            continue
        ratio = statistics.median(paired)
        ok = ratio >= OVERHEAD_TARGET
        failed |= not ok
        print(
            f"{executor:>7} metrics full / minimal: median of {len(paired)} paired ratios {ratio:.3f} "
            f"(range {min(paired):.3f}-{max(paired):.3f}; target >= {OVERHEAD_TARGET}) "
            f"{'PASS' if ok else 'FAIL'}",
            flush=True,
        )
    print(f"load average at the end: {load_average()}")
    if max(os.getloadavg()) > LOADED:
        print(
            f"  other work was running (load average above {LOADED:g} on {os.cpu_count()} CPUs): every figure"
            " above moves with it, so these ratios describe this machine's load as much as qbench"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
