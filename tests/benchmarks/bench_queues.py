"""The shipped queues compared in one run (not a test: run it by hand, with the queues extra).

    python tests/benchmarks/bench_queues.py [--tasks 2000] [--iterations 5] [--workers 1,2,4,8]

Two sweeps through ``python -m qbench -m``, as a user runs them, into a temporary directory:

1. one worker, ``executor=thread`` and ``executor=process``, for ``queue=sqlite`` (qbench's
   reference queue), ``huey``, ``litequeue`` and ``persist_queue``: each job's median
   throughput, its ceiling (qbench's reference statements on one plain sqlite3 connection,
   measured in the same job on the same file system) and their ratio;
2. ``executor=process`` over the worker counts and busy timeouts, per queue: the first worker
   count whose iterations show busy errors (SQLITE_BUSY reaching the worker), or "none up to
   N", the share of tasks run twice (at least once allows it; the reference queue's fence
   does not), and any job that failed (with its reason).

WAL, synchronous NORMAL, busy timeout 5,000 ms, noop tasks, 1,000 history rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ("sqlite", "huey", "litequeue", "persist_queue")


def _failed_row(job: Path) -> pd.DataFrame:
    """A job that failed before its first row (e.g. the queue could not even open): its config."""
    config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    row = {
        "phase": "measure",
        "queue_kind": config["queue"]["kind"],
        "executor_kind": config["executor"]["kind"],
        "workers": config["workers"],
        "busy_timeout_ms": config["busy"]["timeout_ms"],
        "audit_ok": False,
        "busy_total": 0,
    }
    return pd.DataFrame([row])


def sweep(out: Path, args: list[str]) -> pd.DataFrame:
    """Run one sweep; every job's rows (failed jobs' too) with the reason it failed ('' if none)."""
    env = dict(os.environ, QBENCH_NO_PROGRESS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "qbench", "-m", *args, f"hydra.sweep.dir={out}"]
    cmd.append("hydra.callbacks.aggregate.enabled=false")
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True)
    frames = []
    for job in sorted(p for p in out.iterdir() if p.is_dir() and p.name.isdigit()):
        status_file = job / "job_status.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        metrics = job / "metrics.parquet"
        df = pd.read_parquet(metrics) if metrics.exists() else _failed_row(job)
        df["job_reason"] = status.get("reason") or ""
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def show_single(single: pd.DataFrame) -> None:
    measured = single[single["phase"] == "measure"]
    print("\nOne worker: median tasks/s, the same job's ceiling, and their ratio")
    print("| queue | library | executor | tasks/s | ceiling tasks/s | of the ceiling | audit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (queue, executor), g in measured.groupby(["queue_kind", "executor_kind"], sort=False):
        tps, ceiling = g["throughput_tps"].median(), g["ceiling_tps"].median()
        ok = "ok" if g["audit_ok"].all() else "FAILED"
        print(
            f"| {queue} | {g['queue_library'].iloc[0]} | {executor} | {tps:,.0f} | {ceiling:,.0f}"
            f" | {tps / ceiling:.0%} | {ok} |"
        )


def show_onset(onset: pd.DataFrame, workers: str, timeouts: str) -> None:
    print("\nexecutor=process: the first worker count with busy errors, per busy timeout")
    print(
        "| queue | busy.timeout_ms | busy errors first at | busy rate there"
        " | tasks run twice (share, per worker count) | jobs that failed |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    onset = onset[onset["phase"] == "measure"]
    tried = max(int(w) for w in workers.split(","))
    for queue in QUEUES:
        for timeout in (int(t) for t in timeouts.split(",")):
            g = onset[(onset["queue_kind"] == queue) & (onset["busy_timeout_ms"] == timeout)]
            g = g.sort_values("workers")
            busy = g[g["busy_total"] > 0]
            first = f"{int(busy['workers'].iloc[0])} workers" if len(busy) else f"none up to {tried} workers"
            at = busy[busy["workers"] == busy["workers"].iloc[0]] if len(busy) else busy
            rate = f"{at['busy_rate'].median():.2%}" if len(busy) else "-"
            failed = g[g["job_reason"] != ""].drop_duplicates("workers")
            reasons = "; ".join(f"{int(r.workers)} workers: {r.job_reason}" for r in failed.itertuples())
            ran = g.dropna(subset=["tasks_enqueued"]) if "tasks_enqueued" in g else g.iloc[0:0]
            twice = ran.groupby("workers")[["tasks_duplicated", "tasks_enqueued"]].sum()
            shares = ", ".join(
                f"{int(w)}: {r.tasks_duplicated / r.tasks_enqueued:.1%}" for w, r in twice.iterrows()
            )
            print(f"| {queue} | {timeout} | {first} | {rate} | {shares or '-'} | {reasons or 'none'} |")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workers", default="1,2,4,8,16")
    parser.add_argument("--timeouts", default="0,5000", help="busy.timeout_ms values of the onset sweep")
    parser.add_argument("--skip", default="", help="single or onset: a part not to run")
    a = parser.parse_args()
    common = [f"tasks={a.tasks}", f"iterations={a.iterations}", "warmup=1", "history_rows=1000"]
    with tempfile.TemporaryDirectory(prefix="qbench-queues-") as tmp:
        if "single" not in a.skip:
            queues = f"queue={','.join(QUEUES)}"
            show_single(
                sweep(Path(tmp) / "single", [queues, "executor=thread,process", "workers=1", *common])
            )
        if "onset" not in a.skip:
            args = [
                f"queue={','.join(QUEUES)}",
                "executor=process",
                f"workers={a.workers}",
                f"busy.timeout_ms={a.timeouts}",
                *common,
            ]
            show_onset(sweep(Path(tmp) / "onset", args), a.workers, a.timeouts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
