"""The load issue's speed and memory targets, each a ratio measured in this one run (not a test).

    python tests/benchmarks/bench_load.py [--tasks 5000] [--reps 7] [--pairs 20] [--million 1000000]
                                          [--rates 1000,2000,5000,10000] [--skip ratios,memory,steady]

WAL, synchronous NORMAL, autocommit claims, noop tasks. Prints, each measured in this run:
  * from bench_executors.py: throughput / ceiling at 1 worker for executor=async (claim batch
    1 and 16), thread and process (targets >= 0.35, 0.5, 0.7, 0.85; ceiling and drain
    alternate, the median of per-rep ratios), and metrics full / minimal per executor
    (paired ratios, target >= 0.99);
  * the peak RSS of a `--million`-task drain (workers=4, iterations=1, warmup=0) run as
    `python -m qbench` in a child process: the kernel's high-water mark of that process
    (getrusage of the children), against the 300 MB target;
  * workload=steady with executor=process (2 workers): achieved / offered arrival rate per
    rate, and the first rate where the producer falls behind by more than 1%.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_executors  # noqa: E402  (beside this file)

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


def steady(work: Path, rates: list[float], duration_s: float = 3.0) -> bool:
    """Keeping up: achieved_rate_tps over what the schedule offered (arrivals / duration_s), so
    the Poisson scatter of the arrivals count does not count against the producer."""
    behind = None
    for rate in rates:
        rows = job(
            work,
            workers=2,
            iterations=2,
            warmup=1,
            **{
                "executor.kind": "process",
                "executor.processes": 2,
                "workload.kind": "steady",
                "workload.rate": rate,
                "workload.duration_s": duration_s,
            },
        )
        offered = statistics.median(float(r["arrivals"]) / duration_s for r in rows)
        achieved = statistics.median(float(r["achieved_rate_tps"]) for r in rows)
        lag = statistics.median(float(r["producer_lag_p99_ms"]) for r in rows)
        e2e = statistics.median(float(r["e2e_latency_p99_ms"]) for r in rows)
        ratio = statistics.median(
            float(r["achieved_rate_tps"]) / (float(r["arrivals"]) / duration_s) for r in rows
        )
        print(
            f"  steady, process x2, rate {rate:>7,.0f}/s: schedule {offered:>7,.0f}/s, achieved"
            f" {achieved:>7,.0f}/s ({ratio:.4f}), producer lag p99 {lag:,.1f} ms, e2e p99 {e2e:,.1f} ms"
        )
        if behind is None and ratio < 0.99:
            behind = rate
    reached = [r for r in rates if behind is None or r < behind]
    ok = bool(reached) and max(reached) >= 5000
    where = "never, up to the largest rate tried" if behind is None else f"at {behind:,.0f}/s"
    print(
        f"  the producer falls behind (achieved < 99% of the schedule): {where}"
        f" (target: not below 5,000/s) {verdict(ok)}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--million", type=int, default=1_000_000)
    parser.add_argument("--rates", default="1000,2000,5000,10000")
    parser.add_argument("--skip", default="", help="comma-separated: ratios, memory, steady")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="qbench-bench-load-"))
    ok = True
    if "ratios" not in skip:
        # throughput / ceiling per executor and metrics full / minimal: bench_executors.py
        sys.argv = [sys.argv[0], f"--tasks={args.tasks}", f"--reps={args.reps}", f"--pairs={args.pairs}"]
        ok &= bench_executors.main() == 0
    if "memory" not in skip:
        ok &= million(work, args.million)
    if "steady" not in skip:
        ok &= steady(work, [float(r) for r in args.rates.split(",")])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
