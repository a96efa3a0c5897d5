"""Harness overhead, measured as ratios in one run (not a test: run it by hand).

    python tests/benchmarks/bench_overhead.py [--tasks 5000] [--reps 3]

WAL, synchronous NORMAL, 1 worker, noop tasks. Prints, each from this run:
  * throughput / ceiling for autocommit claims of batch 1 and 16 (targets >= 0.2, >= 0.3);
  * throughput with default metrics collection / with collection minimised (target >= 0.97).
For the overhead, one-iteration jobs of the two collection levels alternate (order flipping
every pair) and the figure is the median of the paired ratios, so drift between jobs cancels.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qbench.kinds import MetricsLevel, TxMode
from qbench.run.job import run_job
from qbench.settings import Config, validate


def config(db_dir: Path, tasks: int, batch: int, level: str, ceiling: bool) -> Config:
    c = Config()
    return validate(
        dataclasses.replace(
            c,
            workers=1,
            tasks=tasks,
            iterations=3,
            warmup=1,
            claim=dataclasses.replace(c.claim, tx=TxMode.AUTOCOMMIT, batch=batch),
            metrics=dataclasses.replace(c.metrics, level=MetricsLevel(level)),
            ceiling=dataclasses.replace(c.ceiling, enabled=ceiling),
            db=dataclasses.replace(c.db, dir=str(db_dir)),
        )
    )


def measured(rows: list[dict[str, object]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r["phase"] == "measure"]  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=6, help="jobs per batch size for the ceiling ratios")
    parser.add_argument("--pairs", type=int, default=30, help="full/minimal job pairs for the overhead ratio")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qbench-bench-"))

    def job(batch: int, level: str, ceiling: bool, iterations: int = 3) -> list[dict[str, object]]:
        job_dir = Path(tempfile.mkdtemp(dir=work))
        cfg = config(job_dir, args.tasks, batch, level, ceiling)
        cfg = dataclasses.replace(cfg, iterations=iterations, warmup=1 if iterations > 1 else 0)
        outcome = run_job(cfg, job_dir)
        if not outcome.ok:
            raise SystemExit(f"job failed: {outcome.reason}")
        return outcome.rows

    efficiency: dict[int, list[float]] = {1: [], 16: []}
    tps: dict[int, list[float]] = {1: [], 16: []}
    ceilings: dict[int, list[float]] = {1: [], 16: []}
    full: list[float] = []
    minimal: list[float] = []
    pair_ratios: list[float] = []
    for _ in range(args.reps):
        for batch in (1, 16):
            rows = job(batch, "full", ceiling=True)
            efficiency[batch] += measured(rows, "harness_efficiency")
            tps[batch] += measured(rows, "throughput_tps")
            ceilings[batch].append(float(rows[0]["ceiling_tps"]))  # type: ignore[arg-type]
    # Overhead: many short pairs of one-iteration jobs, order alternating, so drift
    # between jobs cancels in each pair's ratio.
    job(1, "full", ceiling=False, iterations=1)  # warms caches and the file system
    for rep in range(args.pairs):
        pair: dict[str, float] = {}
        for level in ("full", "minimal") if rep % 2 == 0 else ("minimal", "full"):
            pair[level] = measured(job(1, level, ceiling=False, iterations=1), "throughput_tps")[0]
        full.append(pair["full"])
        minimal.append(pair["minimal"])
        pair_ratios.append(pair["full"] / pair["minimal"])

    failed = False
    print(f"WAL/NORMAL, 1 worker, {args.tasks} tasks, {args.reps} reps x 3 measured iterations")
    for batch, target in ((1, 0.2), (16, 0.3)):
        ratio = statistics.median(efficiency[batch])
        ok = ratio >= target
        failed |= not ok
        print(
            f"autocommit batch {batch:>2}: throughput {statistics.median(tps[batch]):>9,.0f} tasks/s, "
            f"ceiling {statistics.median(ceilings[batch]):>9,.0f} tasks/s, "
            f"throughput/ceiling {ratio:.3f} (target >= {target}) {'PASS' if ok else 'FAIL'}"
        )
    ratio = statistics.median(pair_ratios)
    ok = ratio >= 0.97
    failed |= not ok
    print(
        f"metrics full {statistics.median(full):,.0f} tasks/s vs minimal {statistics.median(minimal):,.0f} "
        f"tasks/s: median of {args.pairs} paired ratios {ratio:.3f} "
        f"(target >= 0.97) {'PASS' if ok else 'FAIL'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
