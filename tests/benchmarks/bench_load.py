"""The load issue's speed and memory targets, each a ratio measured in this one run (not a test).

    python tests/benchmarks/bench_load.py [--tasks 5000] [--reps 5] [--pairs 20] [--million 1000000]
                                          [--rates 1000,2000,5000,10000] [--skip memory,steady]

WAL, synchronous NORMAL, autocommit claims, noop tasks. Prints:
  * throughput / ceiling at 1 worker for executor=process, thread and async (claim batch 1),
    and async with claim batch 16 (targets >= 0.85, 0.7, 0.35, 0.5). Every job measures its
    own ceiling just before its iterations; the figure is the median over all measured
    iterations of all reps, the executors' jobs interleaved so drift spreads over all of them;
  * default vs minimal metrics collection: the median of paired one-iteration jobs' ratios,
    the order flipping every pair (target within 1%);
  * the peak RSS of a `--million`-task drain (workers=4, iterations=1, warmup=0) run as
    `python -m qbench` in a child process: the kernel's high-water mark of that process
    (getrusage of the children), against the 300 MB target;
  * workload=steady with executor=process: achieved / offered arrival rate per rate, and the
    first rate where the producer falls behind by more than 1%.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qbench.run.job import run_job  # noqa: E402
from qbench.settings import Config, from_mapping, validate  # noqa: E402

Row = dict[str, Any]


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def config(work: Path, **dotted: Any) -> Config:
    base = {"journal.mode": "wal", "synchronous": "normal", "claim.tx": "autocommit", "db.dir": str(work)}
    return validate(from_mapping(Config, nested({**base, **dotted})))


def job(work: Path, **dotted: Any) -> list[Row]:
    job_dir = Path(tempfile.mkdtemp(dir=work))
    outcome = run_job(config(job_dir, **dotted), job_dir)
    if not outcome.ok:
        raise SystemExit(f"job {dotted} failed: {outcome.reason}")
    return [row for row in outcome.rows if row["phase"] == "measure"]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


CASES = (  # name, overrides, target throughput/ceiling
    ("process, 1 worker, batch 1", {"executor.kind": "process"}, 0.85),
    ("thread,  1 worker, batch 1", {"executor.kind": "thread"}, 0.7),
    ("async,   1 worker, batch 1", {"executor.kind": "async"}, 0.35),
    ("async,   1 worker, batch 16", {"executor.kind": "async", "claim.batch": 16}, 0.5),
)


def ceiling_ratios(work: Path, tasks: int, reps: int) -> bool:
    ratios: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    tps: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    ceilings: list[float] = []
    for _ in range(reps):
        for name, overrides, _ in CASES:
            rows = job(work, workers=1, tasks=tasks, iterations=3, warmup=1, **overrides)
            ratios[name] += [float(r["harness_efficiency"]) for r in rows]
            tps[name] += [float(r["throughput_tps"]) for r in rows]
            ceilings.append(float(rows[0]["ceiling_tps"]))
    print(f"WAL/NORMAL, {tasks} tasks, autocommit; {reps} reps x 3 measured iterations per case")
    print(f"  ceiling (plain sqlite3, one connection): median {statistics.median(ceilings):,.0f} tasks/s")
    ok = True
    for name, _, target in CASES:
        ratio = statistics.median(ratios[name])
        ok &= ratio >= target
        print(
            f"  {name}: {statistics.median(tps[name]):>8,.0f} tasks/s, throughput/ceiling {ratio:.3f}"
            f" (target >= {target}) {verdict(ratio >= target)}"
        )
    return ok


def metrics_overhead(work: Path, tasks: int, pairs: int) -> bool:
    def once(level: str) -> float:
        rows = job(
            work,
            workers=1,
            tasks=tasks,
            iterations=1,
            warmup=0,
            **{"metrics.level": level, "ceiling.enabled": False},
        )
        return float(rows[0]["throughput_tps"])

    once("full")  # warms caches and the file system
    ratios = []
    for rep in range(pairs):
        pair = {
            level: once(level) for level in (("full", "minimal") if rep % 2 == 0 else ("minimal", "full"))
        }
        ratios.append(pair["full"] / pair["minimal"])
    ratio = statistics.median(ratios)
    ok = abs(ratio - 1.0) <= 0.01 or ratio > 1.0
    print(
        f"  metrics full / minimal: median of {pairs} paired ratios {ratio:.3f}"
        f" (target >= 0.99) {verdict(ok)}"
    )
    return ok


def million(work: Path, tasks: int) -> bool:
    out = work / "million"
    command = [
        sys.executable, "-m", "qbench", "workers=4", "iterations=1", "warmup=0", f"tasks={tasks}",
        "ceiling.enabled=false", "iteration_timeout_s=3600", f"hydra.run.dir={out}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        command, cwd=work, capture_output=True, text=True, env={**os.environ, "QBENCH_NO_PROGRESS": "1"}
    )
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        raise SystemExit(f"the {tasks:,}-task drain failed (exit {done.returncode})")
    if peak_kb <= before:
        print("  (an earlier child had a higher peak; the figure below is that bound)")
    peak_mb = peak_kb / 1024
    ok = peak_mb <= 300
    print(f"  {tasks:,}-task drain, workers=4: peak RSS {peak_mb:,.0f} MB (target <= 300 MB) {verdict(ok)}")
    return ok


def steady(work: Path, rates: list[float]) -> bool:
    behind = None
    for rate in rates:
        rows = job(
            work,
            workers=2,
            iterations=2,
            warmup=1,
            **{
                "executor.kind": "process",
                "workload.kind": "steady",
                "workload.rate": rate,
                "workload.duration_s": 3.0,
            },
        )
        achieved = statistics.median(float(r["achieved_rate_tps"]) for r in rows)
        lag = statistics.median(float(r["producer_lag_p99_ms"]) for r in rows)
        ratio = achieved / rate
        print(
            f"  steady, process x2, offered {rate:>8,.0f}/s: achieved {achieved:>8,.0f}/s ({ratio:.4f}),"
            f" producer lag p99 {lag:.1f} ms"
        )
        if behind is None and ratio < 0.99:
            behind = rate
    reached = [r for r in rates if behind is None or r < behind]
    ok = bool(reached) and max(reached) >= 5000
    where = "never, up to the largest rate tried" if behind is None else f"at {behind:,.0f}/s"
    print(
        f"  the producer falls behind (achieved < 99% of offered): {where}"
        f" (target: not below 5,000/s) {verdict(ok)}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--rates", default="1000,2000,5000,10000")
    parser.add_argument("--skip", default="", help="comma-separated: ratios, overhead, memory, steady")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="qbench-bench-load-"))
    ok = True
    if "ratios" not in skip:
        ok &= ceiling_ratios(work, args.tasks, args.reps)
    if "overhead" not in skip:
        ok &= metrics_overhead(work, args.tasks, args.pairs)
    if "memory" not in skip:
        ok &= million(work, args.million)
    if "steady" not in skip:
        ok &= steady(work, [float(r) for r in args.rates.split(",")])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
