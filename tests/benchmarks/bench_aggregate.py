"""Aggregation speed: 1,000 job files of 12 iterations each, fits and report included.

    python tests/benchmarks/bench_aggregate.py [--jobs 1000]

Writes synthetic results through qbench's own writer (4 journal modes x 25 worker
counts x 10 pool sizes, USL-shaped throughput with noise) into a scratch
directory, then times `qbench.aggregate.aggregate` over it, and prints the time
per file as well, so the figure holds on a noisier machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from qbench.analysis.fits import usl_throughput
from qbench.analysis.pipeline import aggregate
from tests.synthetic import config_columns, write_job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    root = Path(tempfile.mkdtemp(prefix="qbench-bench-aggregate-"))
    journals = ["wal", "delete", "truncate", "persist"]
    workers = list(range(1, 26))
    pools = list(range(1, 11))
    started = time.perf_counter()
    n = 0
    for journal in journals:
        for pool in pools:
            for w in workers:
                if n >= args.jobs:
                    break
                peak = 3000.0 if journal == "wal" else 600.0
                x = float(usl_throughput(np.array([w]), peak / 3, 0.05, 0.002)[0]) * (1 + pool / 100)
                cfg = config_columns(
                    workers=w,
                    synchronous="normal" if journal == "wal" else "full",
                    **{"journal.mode": journal, "pool.kind": "fixed", "pool.size": pool},
                )
                write_job(root / f"{n:04d}", cfg, list(x * (1 + rng.normal(0, 0.03, 10))), warmup=2)
                n += 1
    written_s = time.perf_counter() - started
    started = time.perf_counter()
    result = aggregate([root])
    elapsed = time.perf_counter() - started
    print(f"wrote {n} job files x 12 iterations in {written_s:.1f} s (set-up, not timed below)")
    print(
        f"aggregate: {elapsed:.2f} s for {len(result.loaded.files)} files "
        f"({elapsed / n * 1000:.2f} ms per file), {len(result.summary)} configs, "
        f"{len(result.recommendations)} recommendation rows, outputs: {len(result.written)} files"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
