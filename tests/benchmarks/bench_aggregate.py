"""Aggregation speed and memory: 1,000 job files, and 2,000 distinct configs, fits and report included.

    python tests/benchmarks/bench_aggregate.py [--jobs 1000] [--configs 2000]

Writes synthetic results through qbench's own writer into scratch directories
(set-up, not timed), then aggregates each in a child process of its own
(``python tests/benchmarks/bench_aggregate.py --child DIR``), which times
``qbench.analysis.pipeline.aggregate`` and reports its own peak RSS (the kernel's
high-water mark, imports included). Two sweeps:

- files: 4 journal modes x 10 pool sizes x 25 worker counts, one job of 12
  iterations each (1,000 files, 1,000 configs, 40 curves);
- configs: 4 journal modes x 10 pool sizes x 5 claim batches x 10 worker counts
  (2,000 files, 2,000 configs, 200 curves: more than the plots draw one by one).

USL-shaped throughput with 3% noise; targets: files under 10 s, configs under
30 s and 500 MB, every plot written.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qbench.analysis.fits import usl_throughput  # noqa: E402
from tests.synthetic import config_columns, write_job  # noqa: E402

JOURNALS = ["wal", "delete", "truncate", "persist"]
POOLS = list(range(1, 11))
PLOTS = ("plot_throughput.png", "plot_efficiency.png", "plot_busy_rate.png", "plot_latency.png")


def _write_sweep(root: Path, limit: int, batches: list[int], workers: list[int]) -> int:
    """Write up to ``limit`` job files, one config each; return how many."""
    rng = np.random.default_rng(1)
    n = 0
    for journal in JOURNALS:
        for pool in POOLS:
            for batch in batches:
                for w in workers:
                    if n >= limit:
                        return n
                    peak = 3000.0 if journal == "wal" else 600.0
                    shape = float(usl_throughput(np.array([w]), peak / 3, 0.05, 0.002)[0])
                    x = shape * (1 + pool / 100) * (1 + (batch - 1) / 50)
                    cfg = config_columns(
                        workers=w,
                        synchronous="normal" if journal == "wal" else "full",
                        **{
                            "journal.mode": journal,
                            "pool.kind": "fixed",
                            "pool.size": pool,
                            "claim.batch": batch,
                        },
                    )
                    write_job(root / f"{n:04d}", cfg, list(x * (1 + rng.normal(0, 0.03, 10))), warmup=2)
                    n += 1
    return n


def _child(directory: Path) -> int:
    """Aggregate ``directory``; print one JSON line of figures."""
    from qbench.analysis.pipeline import aggregate

    started = time.perf_counter()
    result = aggregate([directory])
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    figures = {
        "seconds": elapsed,
        "peak_rss_mb": peak_kib * 1024 / 1e6,
        "files": len(result.loaded.files),
        "configs": len(result.summary),
        "recommendations": len(result.recommendations),
        "outputs": len(result.written),
        "plots": sorted(p.name for p in result.written if p.name in PLOTS),
    }
    print(json.dumps(figures))
    return 0


def _measure(directory: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(directory)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    figures: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def _line(name: str, figures: dict[str, object], seconds_target: float, mb_target: float | None) -> str:
    seconds, mb = float(str(figures["seconds"])), float(str(figures["peak_rss_mb"]))
    files = int(str(figures["files"]))
    plots = figures["plots"]
    assert isinstance(plots, list)
    ok = seconds < seconds_target and (mb_target is None or mb < mb_target) and len(plots) == len(PLOTS)
    target = f"target < {seconds_target:g} s" + (f", < {mb_target:g} MB" if mb_target else "")
    return (
        f"{name}: {seconds:.2f} s for {files} files ({seconds / files * 1000:.2f} ms per file), "
        f"{figures['configs']} configs, {figures['recommendations']} recommendation rows, "
        f"{figures['outputs']} outputs ({len(plots)} of {len(PLOTS)} plots), peak RSS {mb:.0f} MB "
        f"({target}) {'PASS' if ok else 'FAIL'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="job files of the files sweep")
    parser.add_argument("--configs", type=int, default=2000, help="configs of the configs sweep (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory of job files")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return _child(args.child)
    base = Path(tempfile.mkdtemp(prefix="qbench-bench-aggregate-"))
    started = time.perf_counter()
    files = _write_sweep(base / "files", args.jobs, [1], list(range(1, 26)))
    configs = _write_sweep(base / "configs", args.configs, [1, 2, 4, 8, 16], list(range(1, 11)))
    print(f"wrote {files} + {configs} job files x 12 iterations in {time.perf_counter() - started:.1f} s")
    print(_line("aggregate files", _measure(base / "files"), 10.0, None))
    if configs:
        print(_line("aggregate configs", _measure(base / "configs"), 30.0, 500.0))
    if args.keep:
        print(f"(scratch directory {base}, kept)")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
