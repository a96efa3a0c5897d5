"""The search stage against the full grid on research.yaml's worker range, measured in this one run.

    python tests/benchmarks/bench_search.py [--tasks 1000] [--iterations 6] [--warmup 1]
                                            [--rematch 3] [--keep DIR]

Takes the worker range of experiments/research.yaml's `scaling` stage (its lowest to its highest
count), and runs, as one plan through `python -m qbench.plan` on this machine, journal=wal:
  * `grid`: every worker count of that range, one job each;
  * `search`: a search stage over the same range, with the same overrides.
Prints the jobs each ran, the grid's best worker count and throughput, the search's answer and
the grid's own throughput at that answer, plus the best of research.yaml's own grid points for reference, the
grid's noise, and whether the grid's own iterations separate its best from the search's answer.
When the two answers differ, a rematch measures both again head to head: ``--rematch`` rounds
(default 3), each one job of each worker count, their order alternating round by round, so load
that drifts between jobs falls on both alike. The grid's best of 20 noisy medians is biased
upward (the winner's curse: the highest of many noisy figures is high partly by chance), and
judging the answer by the grid's one job there charges it all of that job's luck; the rematch
judges both on the same footing, and decides the first target.
Targets: the search's answer within 5% of the grid's best worker count's throughput (in the
rematch, or the grid's own figures when the answers agree), with at most 40% of the grid's jobs.
research.yaml's tasks and iterations make a job take several seconds; the defaults here are
smaller (the same range) so that the whole run takes a few minutes.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from qbench.analysis.knee import significantly_slower  # noqa: E402
from qbench.analysis.summary import measured  # noqa: E402
from qbench.plan.spec import load_plan  # noqa: E402
from qbench.results.load import load_results  # noqa: E402

WITHIN = 0.05
JOB_SHARE = 0.40
ALPHA = 0.05


def research_workers() -> list[int]:
    grid = load_plan(ROOT / "experiments" / "research.yaml").stages["scaling"].grid
    return sorted(int(w) for w in grid["workers"])


def plan_text(low: int, high: int, overrides: list[str]) -> str:
    fixed = ", ".join(overrides)
    workers = ", ".join(str(w) for w in range(low, high + 1))
    return (
        "name: bench_search\n"
        "stages:\n"
        "  grid:\n"
        f"    sweep: {{overrides: [{fixed}], grid: {{workers: [{workers}]}}}}\n"
        "  search:\n"
        "    needs: [grid]\n"
        f"    search: {{overrides: [{fixed}], key: workers, range: [{low}, {high}]}}\n"
    )


def rematch(work: Path, overrides: list[str], best: int, answer: int, rounds: int) -> dict[int, list[float]]:
    """Each round one job of ``best`` and one of ``answer`` workers, the order alternating; every
    measured iteration's throughput per worker count."""
    out: dict[int, list[float]] = {best: [], answer: []}
    for i in range(rounds):
        order = (best, answer) if i % 2 == 0 else (answer, best)
        where = work / "rematch" / str(i)
        cmd = [
            sys.executable, "-m", "qbench", "-m", f"workers={order[0]},{order[1]}", *overrides,
            f"hydra.sweep.dir={where}",
        ]  # fmt: skip
        if subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True).returncode != 0:
            raise SystemExit(f"rematch round {i} failed: {' '.join(cmd)}")
        frame = measured(load_results([where]).frame)
        for workers, group in frame.groupby("workers"):
            out[int(workers)].extend(group["throughput_tps"].astype(float))
    return out


def stage_dir(outputs: Path, stage: str) -> Path:
    record = json.loads((outputs / "plans" / "bench_search" / stage / "stage.json").read_text())
    return Path(record["run_dir"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rematch", type=int, default=3, help="head-to-head rounds when the answers differ")
    parser.add_argument("--keep", type=Path, help="write the plan's outputs here (default: a temp dir)")
    args = parser.parse_args()

    research = research_workers()
    low, high = research[0], research[-1]
    overrides = [
        "journal=wal",
        f"tasks={args.tasks}",
        f"iterations={args.iterations}",
        f"warmup={args.warmup}",
        "history_rows=1000",
        "ceiling.enabled=false",
    ]
    with tempfile.TemporaryDirectory(prefix="qbench-bench-search-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        plan = work / "bench_search.yaml"
        plan.write_text(plan_text(low, high, overrides), encoding="utf-8")
        outputs = work / "outputs"
        started = time.monotonic()
        cmd = [sys.executable, "-m", "qbench.plan", str(plan), "--outputs", str(outputs)]
        code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        elapsed = time.monotonic() - started
        if code != 0:
            print(f"the plan exited with status {code}", file=sys.stderr)
            return 1
        summary = pd.read_parquet(stage_dir(outputs, "grid") / "summary.parquet")
        search: dict[str, Any] = json.loads((stage_dir(outputs, "search") / "search.json").read_text())
        iterations = measured(load_results([stage_dir(outputs, "grid")]).frame)
        best = int(summary.set_index("workers")["throughput_tps_median"].idxmax())
        answer = int(search["best"])
        head_to_head = rematch(work, overrides, best, answer, args.rematch) if answer != best else None
    samples = {int(w): g["throughput_tps"].to_numpy(dtype=float) for w, g in iterations.groupby("workers")}

    grid = summary.set_index("workers")["throughput_tps_median"].sort_index()
    share = search["jobs"] / len(grid)
    ratio = float(grid[answer] / grid[best])
    in_research = grid[grid.index.isin(research)]
    print(f"machine run: {elapsed:,.0f} s for both stages; journal=wal, {' '.join(overrides[1:])}")
    print(f"worker range (research.yaml scaling): {low}..{high}; research.yaml's own points: {research}")
    print(f"full grid: {len(grid)} jobs; best {best} workers at {grid[best]:,.0f} tasks/s")
    print(
        f"  (of research.yaml's points alone: best {int(in_research.idxmax())} workers "
        f"at {in_research.max():,.0f} tasks/s)"
    )
    in_order = ", ".join(f"{e['value']}: {e['median_tps']:,.0f}" for e in search["evaluated"])
    print(f"search: {search['jobs']} jobs ({share:.0%} of the grid's), status {search['status']}")
    print(f"  measured (workers: median tasks/s), in order: {in_order}")
    print(
        f"  answer {answer} workers: the grid measured {grid[answer]:,.0f} tasks/s there, "
        f"{ratio:.1%} of the grid's best"
    )
    separated = significantly_slower(samples[answer], samples[best], alpha=ALPHA)
    cvs = summary["throughput_tps_cv"]
    print(
        f"  noise: the grid's throughput CV per worker count {cvs.min():.0%}..{cvs.max():.0%}; its own "
        f"iterations {'do' if separated else 'do not'} separate its best ({best}) from the answer "
        f"({answer}) (rank test or disjoint CIs, alpha {ALPHA})"
    )
    if head_to_head is not None:
        medians = {w: float(pd.Series(v).median()) for w, v in head_to_head.items()}
        ratio = medians[answer] / medians[best]
        print(
            f"  rematch, {args.rematch} jobs each, order alternating: the grid's best {best} workers "
            f"{medians[best]:,.0f} tasks/s, the answer {answer} workers {medians[answer]:,.0f} tasks/s: "
            f"{ratio:.1%} (medians of every measured iteration; this decides the first target)"
        )
    ok = ratio >= 1.0 - WITHIN and share <= JOB_SHARE
    print(
        f"targets: within {WITHIN:.0%} of the best ({'met' if ratio >= 1 - WITHIN else 'MISSED'}), "
        f"at most {JOB_SHARE:.0%} of the jobs ({'met' if share <= JOB_SHARE else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
